"""The one gate in front of every console view: login, then superuser, else 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from dbs_admin.permissions import is_console_user


def console_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous → the admin login (and back); logged in but not a superuser → 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_console_user(request):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def admin_context(request: HttpRequest, title: str) -> dict:
    """What admin/base_site.html needs (site header, user tools, nav sidebar)."""
    from django.contrib import admin

    return {**admin.site.each_context(request), "title": title}
