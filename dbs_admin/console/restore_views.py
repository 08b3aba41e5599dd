"""Restore… in two steps: (1) source + passphrase → manifest; (2) type the database name → restore job.

Step 1 can instead "check the contents": a validate job that decrypts and parses the whole backup
(rows counted, files re-hashed) without touching the database.

Between the steps nothing secret is kept by the browser or the session: step
1 seals the passphrase (``handoff``) and hands the browser a signed "plan"
(source, hand-off reference, user, time) that step 2 sends back. The plan is
bound to the user and expires with the hand-off.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django import forms
from django.core import signing
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from dbs_admin.backups.catalog import stored_copies
from dbs_admin.conf import dbs_settings
from dbs_admin.console import audit
from dbs_admin.console.access import admin_context, console_view
from dbs_admin.console.upload_handler import FIELD, IDENTITY_FIELD, SealedUploadHandler
from dbs_admin.jobs import launch
from dbs_admin.jobs.handed_keys import KeyRefused, open_identity
from dbs_admin.jobs.uploads import UploadRefused, private_upload_path
from dbs_admin.models import AuditEvent, Backup
from dbs_admin.sealed import KeySlotError, NotSealedError, SealedError, UnrecoverableError, WrongIdentityError

PLAN_SALT = "dbs_admin.restore-plan"
PLAN_TTL = timedelta(minutes=10)
WRONG_PASSPHRASE = "Wrong passphrase: it opens none of this backup's key slots. Check it and try again."
WRONG_IDENTITY = "This identity opens none of this backup's key slots: it is not one of the backup's recipients."
RECIPIENTS_ONLY = ("This backup is sealed to recipient keys only (no passphrase slot): give the identity file of one "
                   "of its recipients, and the passphrase that unlocks it.")
PASSPHRASE_ONLY = "This backup has no recipient slot: it opens with its passphrase alone (no identity file)."
DAMAGED = "This backup is damaged beyond repair and cannot be restored: {detail}"


class RestoreSourceForm(forms.Form):
    backup = forms.ModelChoiceField(queryset=Backup.objects.all(), required=False, label="Backup",
                                    empty_label="— upload a file instead —")
    passphrase = forms.CharField(widget=forms.PasswordInput(render_value=False), strip=False,
                                 help_text="The backup's passphrase or, with an identity file, the identity's.")


class RestoreConfirmForm(forms.Form):
    plan = forms.CharField(widget=forms.HiddenInput)
    confirm = forms.CharField(label="Type the database name to confirm", max_length=500)
    safety_backup = forms.BooleanField(
        required=False, initial=True, label="First back up the current data",
        help_text="A backup of what is about to be replaced, on the default target, sealed with the same key: "
                  "a restore of the wrong backup can be undone.",
    )


def database_label(alias: str = "default") -> str:
    """What the user types to confirm: the database's name (SQLite: the file name)."""
    name = str(connections[alias].settings_dict["NAME"])
    return Path(name).name if connections[alias].vendor == "sqlite" else name


def _applied_migrations(alias: str = "default") -> set[tuple[str, str]]:
    return set(MigrationRecorder(connections[alias]).applied_migrations())


def _manifest_migrations(manifest: dict) -> set[tuple[str, str]] | None:
    raw = manifest.get("migrations")
    if raw is None:
        return None
    if isinstance(raw, dict):
        return {(app, name) for app, names in raw.items() for name in names}
    return {tuple(item)[:2] for item in raw}


def summarize(manifest: dict, alias: str = "default") -> dict:
    """What step 1 shows: rows per model, files, and whether migrations match this code's database."""
    counts = manifest.get("counts") or manifest.get("models") or manifest.get("rows") or {}
    if isinstance(counts, list):
        counts = {item.get("model", "?"): item.get("count", item.get("rows", 0)) for item in counts}
    files = manifest.get("files")
    if isinstance(files, dict):
        file_count, file_bytes = files.get("count", 0), files.get("bytes", 0)
    elif isinstance(files, list):
        file_count, file_bytes = len(files), sum(f.get("size", 0) for f in files if isinstance(f, dict))
    else:
        file_count, file_bytes = manifest.get("file_count", files or 0), manifest.get("file_bytes", 0)
    in_backup = _manifest_migrations(manifest)
    here = _applied_migrations(alias)
    return {
        "counts": sorted((str(k), v) for k, v in counts.items()),
        "total_rows": sum(v for v in counts.values() if isinstance(v, int)),
        "file_count": file_count,
        "file_bytes": file_bytes,
        "migrations_known": in_backup is not None,
        "migrations_match": in_backup == here if in_backup is not None else None,
        "only_in_backup": sorted(f"{a}.{n}" for a, n in (in_backup or set()) - here),
        "only_here": sorted(f"{a}.{n}" for a, n in here - (in_backup or set())) if in_backup is not None else [],
        "engine": manifest.get("engine", ""),
        "created": manifest.get("created_at") or manifest.get("created", ""),
        "label": manifest.get("label", ""),
    }


def explain_key_failure(exc: BaseException) -> str:
    """One clear sentence per failure a user can meet opening a backup (Restore…, Run drill)."""
    if isinstance(exc, KeyRefused):
        return str(exc)
    if isinstance(exc, WrongIdentityError):
        return PASSPHRASE_ONLY if exc.no_slot_of_that_kind else WRONG_IDENTITY
    if isinstance(exc, KeySlotError):
        return RECIPIENTS_ONLY if exc.no_slot_of_that_kind else WRONG_PASSPHRASE
    if isinstance(exc, UnrecoverableError):
        return DAMAGED.format(detail=exc)
    if isinstance(exc, NotSealedError):
        return f"This is not a dbs_admin backup (.dbs): {exc}"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, SealedError) and cause is not exc:
        return explain_key_failure(cause)
    return str(exc)


def _read_manifest(source, target: str | None, passphrase: str, identity_file: bytes | None) -> dict:
    from dbs_admin.backups.api import read_manifest

    if identity_file is not None:
        identity = open_identity(identity_file, passphrase)
        return read_manifest(source, target=target, identity=identity)
    return read_manifest(source, target=target, passphrase=passphrase)


def _render_step1(request, form, error: str | None = None, status: int = 200) -> HttpResponse:
    context = {**admin_context(request, "Restore a backup"), "form": form, "error": error, "upload_field": FIELD,
               "identity_field": IDENTITY_FIELD}
    return render(request, "dbs_admin/restore_step1.html", context, status=status)


@console_view
def restore_start(request: HttpRequest) -> HttpResponse:
    """Step 1 page (GET); its form posts to :func:`restore_check`."""
    initial = {"backup": request.GET.get("backup")} if request.GET.get("backup") else {}
    return _render_step1(request, RestoreSourceForm(initial=initial))


@csrf_exempt
@sensitive_post_parameters("passphrase")
@console_view
def restore_check(request: HttpRequest) -> HttpResponse:
    """Install the streaming upload handler before anything reads the body, then check CSRF as usual."""
    handler = SealedUploadHandler(request)
    request.upload_handlers = [handler]
    return _restore_check(request, handler)


_restore_check = csrf_protect(lambda request, handler: _step1_post(request, handler))


@sensitive_variables("form", "passphrase", "identity_file")
def _step1_post(request: HttpRequest, handler: SealedUploadHandler) -> HttpResponse:
    if request.method != "POST":
        return redirect("dbs_admin:restore")
    form = RestoreSourceForm(request.POST)
    request.FILES  # noqa: B018 - parse the body now (the handler streams the upload)
    if handler.error:
        audit.record(request, "upload", outcome=AuditEvent.Outcome.DENIED, detail=handler.error)
        return _render_step1(request, RestoreSourceForm(), handler.error, status=400)
    if not form.is_valid():
        handler.discard()
        return _render_step1(request, form, status=400)
    backup = form.cleaned_data["backup"]
    upload = handler.path if FIELD in request.FILES else None
    if backup is None and upload is None:
        return _render_step1(request, form, "Choose a backup from the list or upload a .dbs file.", status=400)
    if upload is not None:
        backup = None  # an upload wins over the list
        from dbs_admin.sealed import info  # here, not at start-up: the container's readers bring numpy

        try:
            info(upload)  # cheap structural check, no key needed
        except SealedError as exc:
            handler.discard()
            audit.record(request, "upload", outcome=AuditEvent.Outcome.DENIED, detail=str(exc))
            return _render_step1(request, RestoreSourceForm(), explain_key_failure(exc), status=400)
    copy = stored_copies(backup).first() if backup else None  # the restore falls back to other copies
    source = upload if upload is not None else backup.name
    target = copy.target if copy else None
    passphrase = form.cleaned_data["passphrase"]
    identity_file = handler.identity or None
    try:
        manifest = _read_manifest(source, target, passphrase, identity_file)
    except Exception as exc:  # every failure gets one sentence; nothing was changed
        if upload is not None:
            handler.discard()
        why = explain_key_failure(exc)
        audit.record(request, "restore-check", backup=backup, outcome=AuditEvent.Outcome.DENIED,
                     detail=why, object_repr=backup.name if backup else "upload")
        return _render_step1(request, RestoreSourceForm(initial={"backup": backup}), why, status=400)
    identity_text = identity_file.decode("ascii") if identity_file else None
    if request.POST.get("action") == "validate":
        return _queue_content_check(request, backup, target, upload, passphrase, identity_text)
    ref = launch.seal_restore_key(passphrase=passphrase, identity_file=identity_text, ttl=PLAN_TTL)
    plan = signing.TimestampSigner(salt=PLAN_SALT).sign_object({
        "u": request.user.pk, "ref": ref, "backup": backup.pk if backup else None,
        "target": target, "upload": upload.name if upload is not None else None,
    })
    return _render_step2(request, plan, summarize(manifest), backup, upload is not None)


@sensitive_variables("passphrase", "identity_text")
def _queue_content_check(request, backup, target, upload, passphrase: str, identity_text: str | None):
    """"Check the contents" instead of restoring: a validate job that decrypts and parses every byte,
    with the key sealed for the worker exactly as for a restore. An upload is removed when it ends."""
    params = {"decrypt": True, "target": target}
    if upload is not None:
        params["upload"] = str(upload)
    else:
        params["backup_name"] = backup.name
    try:
        job = launch.queue_validate(user=request.user, backup=backup, params=params, passphrase=passphrase,
                                    identity_file=identity_text)
    except launch.QueueUnavailable as exc:
        return _render_step1(request, RestoreSourceForm(initial={"backup": backup}), str(exc), status=503)
    audit.record(request, "validate", backup=backup, object_repr=backup.name if backup else "upload",
                 detail=f"job {job.pk} queued: decrypt and check the contents")
    return redirect("dbs_admin:job", pk=job.pk)


def _render_step2(request, plan, summary, backup, uploaded, form=None, error=None, status=200):
    context = {
        **admin_context(request, "Restore a backup: confirm"),
        "summary": summary, "backup": backup, "uploaded": uploaded, "database": database_label(),
        "safety_target": dbs_settings.DEFAULT_TARGET,
        "form": form or RestoreConfirmForm(initial={"plan": plan}), "error": error,
    }
    return render(request, "dbs_admin/restore_step2.html", context, status=status)


@console_view
def restore_confirm(request: HttpRequest) -> HttpResponse:
    """Step 2: the typed database name must match; then queue the restore job and show its progress."""
    if request.method != "POST":
        return redirect("dbs_admin:restore")
    form = RestoreConfirmForm(request.POST)
    if not form.is_valid():
        return redirect("dbs_admin:restore")
    try:
        plan = signing.TimestampSigner(salt=PLAN_SALT).unsign_object(
            form.cleaned_data["plan"], max_age=PLAN_TTL.total_seconds()
        )
    except signing.BadSignature:
        return _render_step1(request, RestoreSourceForm(),
                             "This restore form has expired or was altered; start again.", status=400)
    if plan["u"] != request.user.pk:
        return _render_step1(request, RestoreSourceForm(), "This restore form is not yours; start again.", 403)
    if form.cleaned_data["confirm"].strip() != database_label():
        backup = Backup.objects.filter(pk=plan["backup"]).first()
        return _render_step2(request, form.cleaned_data["plan"], None, backup, bool(plan["upload"]), form=form,
                             error=f"That is not the database name. Type {database_label()!r} exactly.", status=400)
    params = {"database": "default", "target": plan["target"],
              "safety_backup": dbs_settings.DEFAULT_TARGET if form.cleaned_data["safety_backup"] else None}
    backup = None
    if plan["upload"]:
        try:
            params["upload"] = str(private_upload_path(plan["upload"]))
        except UploadRefused as exc:
            return _render_step1(request, RestoreSourceForm(), str(exc), status=400)
    else:
        backup = get_object_or_404(Backup, pk=plan["backup"])
        params["backup_name"] = backup.name
    try:
        job = launch.queue_restore(user=request.user, backup=backup, params=params, key_ref=plan["ref"])
    except launch.QueueUnavailable as exc:
        return _render_step1(request, RestoreSourceForm(initial={"backup": backup}), str(exc), status=503)
    audit.record(request, "restore", backup=backup, object_repr=backup.name if backup else "upload",
                 detail=f"job {job.pk} queued into {database_label()!r}")
    return redirect("dbs_admin:job", pk=job.pk)
