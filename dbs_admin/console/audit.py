"""Writing AuditEvent rows: who, what, which backup, from where, how it ended."""

from __future__ import annotations

from django.http import HttpRequest

from dbs_admin.models import AuditEvent, Backup


def client_ip(request: HttpRequest | None) -> str | None:
    """REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a proxy the site trusts rewrites it."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    request: HttpRequest | None,
    action: str,
    *,
    backup: Backup | None = None,
    outcome: str = AuditEvent.Outcome.OK,
    detail: str = "",
    object_repr: str = "",
    user=None,
) -> AuditEvent:
    user = user if user is not None else getattr(request, "user", None)
    authenticated = bool(user is not None and user.is_authenticated)
    return AuditEvent.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        backup=backup,
        object_repr=(object_repr or (backup.name if backup else ""))[:300],
        ip=client_ip(request),
        outcome=outcome,
        detail=detail,
    )
