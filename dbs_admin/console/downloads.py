"""Signed, expiring download links bound to the user who asked, streamed from a target.

Why signed links on top of the login: a link that leaks (browser history,
a proxy log, a pasted chat message) is useless to anyone else and dies after
``DOWNLOAD_LINK_TTL`` seconds. The token is a ``TimestampSigner`` signature
over (backup id, user id); every use, good or bad, is audited. Bytes are
streamed from the target that holds the copy (never from MEDIA_ROOT, never
loaded in memory).
"""

from __future__ import annotations

from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from dbs_admin.backups.catalog import stored_copies
from dbs_admin.backups.host_disks import OnAnotherHostError, refuse_if_elsewhere
from dbs_admin.conf import dbs_settings
from dbs_admin.console import audit
from dbs_admin.console.access import console_view
from dbs_admin.models import AuditEvent, Backup
from dbs_admin.targets import get_target

SALT = "dbs_admin.download"


def make_token(backup: Backup, user) -> str:
    return signing.TimestampSigner(salt=SALT).sign_object({"b": backup.pk, "u": user.pk})


def download_url(backup: Backup, user) -> str:
    return reverse("dbs_admin:download", args=[make_token(backup, user)])


@console_view
def issue_link(request: HttpRequest, pk: int) -> HttpResponse:
    """The "Download" button: sign a fresh link for this user and follow it."""
    backup = get_object_or_404(Backup, pk=pk)
    return redirect(download_url(backup, request.user))


def _refuse(request: HttpRequest, status: int, detail: str, backup: Backup | None = None) -> HttpResponse:
    audit.record(request, "download", backup=backup, outcome=AuditEvent.Outcome.DENIED, detail=detail)
    message = "This download link has expired; ask for a new one." if status == 410 else "This link is not yours."
    return HttpResponse(message, status=status, content_type="text/plain")


@console_view
def download(request: HttpRequest, token: str) -> HttpResponse:
    """Stream the backup if the token is intact, fresh and was issued to this user."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        data = signer.unsign_object(token, max_age=dbs_settings.DOWNLOAD_LINK_TTL)
    except signing.SignatureExpired:
        return _refuse(request, 410, "expired link")
    except signing.BadSignature:
        return _refuse(request, 403, "tampered or invalid link")
    backup = Backup.objects.filter(pk=data.get("b")).first()
    if data.get("u") != request.user.pk:
        return _refuse(request, 403, f"link issued to user id {data.get('u')}", backup)
    if backup is None:
        raise Http404("This backup no longer exists.")
    elsewhere = []
    for copy in stored_copies(backup):  # the first copy that opens; the audit says which
        try:
            refuse_if_elsewhere(copy)
        except OnAnotherHostError as exc:
            elsewhere.append(str(exc))
            continue
        try:
            target = get_target(copy.target)
            stream = target.open(backup.name)
        except Exception as exc:  # try the next copy; the audit says why this one failed
            audit.record(request, "download", backup=backup, outcome=AuditEvent.Outcome.FAILED,
                         detail=f"target {copy.target}: {exc}")
            continue
        audit.record(request, "download", backup=backup, detail=f"from target {copy.target}")
        response = FileResponse(stream, as_attachment=True, filename=backup.name,
                                content_type="application/octet-stream")
        if "Content-Length" not in response and backup.size:
            response["Content-Length"] = str(backup.size)
        return response
    if elsewhere:
        audit.record(request, "download", backup=backup, outcome=AuditEvent.Outcome.FAILED, detail=elsewhere[0])
        return HttpResponse(elsewhere[0], status=404, content_type="text/plain")  # the one line, as it is
    raise Http404("No target holds a readable copy of this backup.")
