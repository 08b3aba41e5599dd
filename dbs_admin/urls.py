"""URLs of the console outside the ModelAdmins (downloads, status); include under any prefix."""

from __future__ import annotations

from django.urls import path

from dbs_admin.console import downloads, restore, views

app_name = "dbs_admin"

urlpatterns = [
    path("backup/", views.backup_now, name="backup_now"),
    path("jobs/<int:pk>/", views.job_detail, name="job"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("backups/<int:pk>/download/", downloads.issue_link, name="download_link"),
    path("download/<str:token>/", downloads.download, name="download"),
    path("restore/", restore.restore_start, name="restore"),
    path("restore/check/", restore.restore_check, name="restore_check"),
    path("restore/confirm/", restore.restore_confirm, name="restore_confirm"),
    path("schedules/", views.schedules_page, name="schedules"),
]

from dbs_admin.drills.urls import urlpatterns as _drills_urlpatterns  # noqa: E402

urlpatterns += _drills_urlpatterns
