"""Who may use the console, and the one gate in front of every console view and ModelAdmin.

Superusers only, everywhere: backups hold every row and file of the site,
including password hashes, so "staff" is not enough. One predicate keeps
views, admin pages and downloads consistent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from dbs_admin.console.error_reports import protect


def is_console_user(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_superuser)


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


def console_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous → the admin login (and back); logged in but not a superuser → 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        protect(request)  # no passphrase on an error page, DEBUG or not
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_console_user(request):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def admin_context(request: HttpRequest, title: str) -> dict:
    """What admin/base_site.html needs (site header, user tools, nav sidebar)."""
    return {**admin.site.each_context(request), "title": title}
