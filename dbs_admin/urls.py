"""The URLconf to include (``path("dbs/", include("dbs_admin.urls"))``); the routes live in the console."""

from dbs_admin.console.urls import app_name, urlpatterns

__all__ = ["app_name", "urlpatterns"]
