"""URLs of the drills (included by dbs_admin/urls.py under the ``dbs_admin`` namespace)."""

from __future__ import annotations

from django.urls import path

from dbs_admin.drills import views

urlpatterns = [
    path("status/", views.status, name="status"),
]
