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
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from dbs_admin.console.error_reports import protect


def is_console_user(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_superuser)


SUPERUSERS_ONLY = ("The backup console is for superusers only. A backup holds every row and file of the site, "
                   "password hashes included, and a restore replaces them all, so staff permissions are not "
                   "enough: ask a superuser.")


def forbidden(request: HttpRequest) -> HttpResponse:
    """The 403 a logged-in user who is not a superuser gets: the admin's look, and why, instead of a bare
    "403 Forbidden" from the project's default handler."""
    context = {**admin.site.each_context(request), "title": "Superusers only", "explanation": SUPERUSERS_ONLY}
    return TemplateResponse(request, "dbs_admin/forbidden.html", context, status=403)


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Base for every console ModelAdmin: visible and usable by superusers only (others get :func:`forbidden`).

    Its lists and detail pages load the console's stylesheet (columns that wrap to fit a 1280 px window,
    readable detail tables).
    """

    class Media:
        css = {"all": ["dbs_admin/console.css"]}

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not is_console_user(request):
            return forbidden(request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None) -> HttpResponse:
        if not is_console_user(request):
            return forbidden(request)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request: HttpRequest, object_id, extra_context=None) -> HttpResponse:
        if not is_console_user(request):
            return forbidden(request)
        return super().history_view(request, object_id, extra_context)

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
    """Anonymous → the admin login (and back); logged in but not a superuser → 403 (:func:`forbidden`)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        protect(request)  # no passphrase on an error page, DEBUG or not
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_console_user(request):
            return forbidden(request)
        return view(request, *args, **kwargs)

    return wrapper


def admin_context(request: HttpRequest, title: str) -> dict:
    """What admin/base_site.html needs (site header, user tools, nav sidebar)."""
    return {**admin.site.each_context(request), "title": title}
