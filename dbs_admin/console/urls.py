"""Every console route outside the ModelAdmins (Back up now, jobs, downloads, Restore…, Schedules, status).

Included under any prefix through ``dbs_admin.urls``, in the ``dbs_admin`` namespace.
"""

from __future__ import annotations

from django.urls import path

from dbs_admin.console import downloads, restore_views, status_view, views

app_name = "dbs_admin"

urlpatterns = [
    path("backup/", views.backup_now, name="backup_now"),
    path("jobs/<int:pk>/", views.job_detail, name="job"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("backups/<int:pk>/validate/", views.validate_backup, name="backup_validate"),
    path("backups/<int:pk>/download/", downloads.issue_link, name="download_link"),
    path("download/<str:token>/", downloads.download, name="download"),
    path("restore/", restore_views.restore_start, name="restore"),
    path("restore/check/", restore_views.restore_check, name="restore_check"),
    path("restore/confirm/", restore_views.restore_confirm, name="restore_confirm"),
    path("schedules/", views.schedules_page, name="schedules"),
    path("status/", status_view.status, name="status"),
]
