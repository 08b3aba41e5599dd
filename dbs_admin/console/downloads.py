"""Signed, expiring download links bound to the user who asked, streamed from a target.

Why signed links on top of the login: a link that leaks (browser history,
a proxy log, a pasted chat message) is useless to anyone else and dies after
``DOWNLOAD_LINK_TTL`` seconds. The token is a ``TimestampSigner`` signature
over (backup id, user id); every use, good or bad, is audited. Bytes are
streamed from the target that holds the copy (never from MEDIA_ROOT, never
loaded in memory).

A snapshot in a repository target has no file to stream: its link leads to a
form asking for the key (the repository's passphrase, or an identity file),
then the snapshot is exported into a private work folder (``private_dir``:
staged on disk, never in memory; the sealed container needs a seekable file
for its two copies and trailing metadata) and streamed; the folder goes when
the response is closed, and a killed worker's is swept with the other
leftovers. A backup that also has a file copy streams that file instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from dbs_admin.backups.catalog import stored_copies
from dbs_admin.backups.host_disks import OnAnotherHostError, refuse_if_elsewhere
from dbs_admin.conf import dbs_settings
from dbs_admin.console import audit
from dbs_admin.console.access import admin_context, console_view
from dbs_admin.models import AuditEvent, Backup
from dbs_admin.targets import get_target
from dbs_admin.targets.repository import is_repository

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


@sensitive_post_parameters("passphrase")
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
    elsewhere, repositories = [], []
    for copy in stored_copies(backup):  # the first copy that opens; the audit says which
        try:
            refuse_if_elsewhere(copy)
        except OnAnotherHostError as exc:
            elsewhere.append(str(exc))
            continue
        try:
            target = get_target(copy.target)
            if is_repository(target):
                repositories.append(target)
                continue
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
    if repositories:
        return _export(request, backup, repositories[0])
    if elsewhere:
        audit.record(request, "download", backup=backup, outcome=AuditEvent.Outcome.FAILED, detail=elsewhere[0])
        return HttpResponse(elsewhere[0], status=404, content_type="text/plain")  # the one line, as it is
    raise Http404("No target holds a readable copy of this backup.")


class _ExportFile:
    """The exported file, read by the response; closing it removes its private folder."""

    def __init__(self, path: Path):
        self._folder = path.parent
        self._file = open(path, "rb")  # noqa: SIM115 - closed by the response

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def close(self) -> None:
        self._file.close()
        shutil.rmtree(self._folder, ignore_errors=True)


@sensitive_variables("passphrase", "identity_text", "key")
def _export(request: HttpRequest, backup: Backup, target) -> HttpResponse:
    """GET: the key form. POST: export the snapshot with that key and stream the file (see the docstring)."""
    from dbs_admin.backups.repository import export_snapshot
    from dbs_admin.backups.sealing_keys import argon2_params
    from dbs_admin.backups.sources import private_dir
    from dbs_admin.console.restore_views import explain_key_failure
    from dbs_admin.jobs.handed_keys import open_identity

    context = {**admin_context(request, "Download a repository snapshot"), "backup": backup, "target": target.name}
    if request.method != "POST":
        return render(request, "dbs_admin/export_key.html", context)
    passphrase = request.POST.get("passphrase", "")
    upload = request.FILES.get("identity")
    work = None
    try:
        if not passphrase:
            raise ValueError("Give the passphrase.")
        identity = open_identity(upload.read(64 << 10), passphrase) if upload else None
        params, allow_weak = argon2_params()
        keys = {"recipients": [identity.recipient]} if identity is not None else {"passphrase": passphrase}
        work = private_dir("export")
        dest = work / backup.name
        report = export_snapshot(target, backup.name, dest, passphrase=None if identity else passphrase,
                                 identity=identity, keys={**keys, "argon2": params, "allow_weak_argon2": allow_weak})
    except Exception as exc:  # every failure gets one sentence; nothing is left behind
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        why = explain_key_failure(exc)
        audit.record(request, "download", backup=backup, outcome=AuditEvent.Outcome.DENIED,
                     detail=f"export from target {target.name}: {why}")
        return render(request, "dbs_admin/export_key.html", {**context, "error": why}, status=400)
    audit.record(request, "download", backup=backup, detail=f"export of the snapshot on target {target.name}")
    response = FileResponse(_ExportFile(dest), as_attachment=True, filename=backup.name,
                            content_type="application/octet-stream")
    response["Content-Length"] = str(report.size)
    return response
