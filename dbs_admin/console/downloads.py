"""Signed, expiring download links bound to the user who asked, streamed from a target.

Why signed links on top of the login: a link that leaks (browser history,
a proxy log, a pasted chat message) is useless to anyone else and dies after
``DOWNLOAD_LINK_TTL`` seconds. The token is a ``TimestampSigner`` signature
over (backup id, user id); every use, good or bad, is audited. Bytes are
streamed from the target that holds the copy (never from MEDIA_ROOT, never
loaded in memory).

A snapshot in a repository target has no file to stream: its link leads to a
form asking for the key (the repository's passphrase, or an identity file),
then an export job is queued (the key sealed for the worker, never in the
broker or the database in the clear): a multi-GB snapshot's export outlasts
any proxy's timeout, so it runs in a worker with its progress on the job
page. The worker seals the file into a private folder (``jobs.exports``); the
job page then offers it through a link of this same kind (signed over the job
and the user, expiring), and the file goes when its link expires. A backup
that also has a file copy streams that file instead.
"""

from __future__ import annotations

from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from dbs_admin.backups.catalog import stored_copies
from dbs_admin.backups.host_disks import OnAnotherHostError, refuse_if_elsewhere
from dbs_admin.conf import dbs_settings
from dbs_admin.console import audit
from dbs_admin.console.access import admin_context, console_view
from dbs_admin.jobs import exports
from dbs_admin.jobs.handed_keys import NOT_AN_IDENTITY
from dbs_admin.models import AuditEvent, Backup, Job
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
    if "e" in data:  # an export job's file (a repository snapshot's download)
        return _serve_export(request, data["e"])
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


IDENTITY_LIMIT = 64 << 10  # an identity file is a line of text; anything larger is not one


@sensitive_variables("passphrase", "identity_text")
def _export(request: HttpRequest, backup: Backup, target) -> HttpResponse:
    """GET: the key form. POST: queue the export job with that key (sealed for the worker, see
    ``jobs.handoff``) and show its page, which offers the file once made (see the module docstring)."""
    from dbs_admin.jobs import launch

    context = {**admin_context(request, "Download a repository snapshot"), "backup": backup, "target": target.name}
    if request.method != "POST":
        return render(request, "dbs_admin/export_key.html", context)
    passphrase = request.POST.get("passphrase", "")
    upload = request.FILES.get("identity")
    error = None
    identity_text = None
    if not passphrase:
        error = "Give the passphrase."
    elif upload is not None:
        try:
            identity_text = upload.read(IDENTITY_LIMIT + 1).decode("ascii")
        except UnicodeDecodeError:
            identity_text = None
        if identity_text is None or len(identity_text) > IDENTITY_LIMIT:
            error = NOT_AN_IDENTITY
    if error is None:
        try:
            job = launch.queue_export(user=request.user, backup=backup, target=target.name, passphrase=passphrase,
                                      identity_file=identity_text)
        except launch.QueueUnavailable as exc:
            error = str(exc)
    if error is not None:
        audit.record(request, "download", backup=backup, outcome=AuditEvent.Outcome.DENIED,
                     detail=f"export from target {target.name}: {error}")
        return render(request, "dbs_admin/export_key.html", {**context, "error": error}, status=400)
    audit.record(request, "export", backup=backup, detail=f"job {job.pk} queued (target {target.name})")
    return redirect("dbs_admin:job", pk=job.pk)


def export_link(job: Job, user) -> str:
    """The signed link to an export job's file, for ``user`` only (the download links' signer and life)."""
    token = signing.TimestampSigner(salt=SALT).sign_object({"e": job.pk, "u": user.pk})
    return reverse("dbs_admin:download", args=[token])


def export_context(job: Job, user) -> dict:
    """What the job page shows of a finished export: its link while it is kept, or that it expired."""
    if job.kind != Job.Kind.EXPORT or job.state != Job.State.SUCCEEDED:
        return {}
    expires = exports.expires_at(job)
    if expires is None or expires <= timezone.now() or not (job.params or {}).get("file"):
        return {"export_expired": True}
    return {"export_url": export_link(job, user), "export_expires": expires,
            "export_size": (job.params or {}).get("size")}


def _serve_export(request: HttpRequest, job_pk) -> HttpResponse:
    """Stream an export job's file (the link was checked: intact, fresh, this user's)."""
    job = Job.objects.select_related("backup").filter(pk=job_pk, kind=Job.Kind.EXPORT).first()
    if job is None:
        raise Http404("This export no longer exists.")
    try:
        path = exports.served_file(job)
    except exports.ExportUnavailable as exc:
        if exc.expired:
            return _refuse(request, 410, str(exc), job.backup)
        audit.record(request, "download", backup=job.backup, outcome=AuditEvent.Outcome.FAILED, detail=str(exc))
        return HttpResponse(str(exc), status=404, content_type="text/plain")
    audit.record(request, "download", backup=job.backup,
                 detail=f"export of the snapshot on target {job.params.get('target')} (job #{job.pk})")
    name = job.params.get("backup_name") or path.name
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=name,  # noqa: SIM115 - the response closes it
                            content_type="application/octet-stream")
    response["Content-Length"] = str(path.stat().st_size)
    return response
