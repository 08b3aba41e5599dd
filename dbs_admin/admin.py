"""The "Backups" section of the Django admin."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .models import Dashboard
from .permissions import is_console_user


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Base for every console ModelAdmin: visible and usable by superusers only."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_console_user(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_console_user(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Dashboard)
class DashboardAdmin(SuperuserOnlyAdmin):
    """Renders the console dashboard in place of a change list."""

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not is_console_user(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Backups",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "dbs_admin/dashboard.html", context)
