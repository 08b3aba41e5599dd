"""The JSON status view for monitoring: is the site recoverable right now?

Who may read it: a logged-in superuser, or anyone presenting
``DBS_ADMIN["STATUS_TOKEN"]`` (``?token=`` or the ``X-DBS-Status-Token``
header, or ``Authorization: Bearer``), compared in constant time. A wrong
token is refused (403) even for a logged-in user, so a monitor's broken
configuration shows up at once. Anonymous without a token goes to the login
page; staff who are not superusers get 403 (backups hold every row).

The HTTP status follows health (200 healthy, 503 not), so the simplest
uptime monitor can alert on it without parsing JSON.
"""

from __future__ import annotations

import hmac

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from dbs_admin.conf import dbs_settings
from dbs_admin.console.access import is_console_user
from dbs_admin.drills.health import health_status

TOKEN_HEADER = "X-DBS-Status-Token"


def _presented_token(request: HttpRequest) -> str | None:
    if token := request.GET.get("token"):
        return token
    if token := request.headers.get(TOKEN_HEADER):
        return token
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def _token_ok(presented: str) -> bool:
    configured = dbs_settings.STATUS_TOKEN
    if not configured:
        return False
    return hmac.compare_digest(presented.encode(), str(configured).encode())


@never_cache
@require_GET
def status(request: HttpRequest) -> HttpResponse:
    presented = _presented_token(request)
    if presented is not None:
        if not _token_ok(presented):
            return JsonResponse({"error": "invalid status token"}, status=403)
    elif not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    elif not is_console_user(request):
        return JsonResponse({"error": "superusers only"}, status=403)
    health = health_status()
    return JsonResponse(health.as_dict(), status=200 if health.healthy else 503)
