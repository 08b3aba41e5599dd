"""*Run drill* from the console: with the configured drill identity, or with a key the user gives here.

Why a form: scheduled backups are sealed to recipient keys, and a drill has
to open one. When ``DRILL_IDENTITY`` is configured the worker uses it and the
button just queues the drill. Otherwise the page asks for what opens the
newest backup (its passphrase, or an identity file and the passphrase that
unlocks it), checks it against that backup's key slots at once (one
sentence when it does not fit, nothing queued), and hands it to the worker
sealed, exactly as a restore does (``jobs.launch``, ``jobs.handoff``). The
identity file is read into memory by the upload handler, never written here.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from dbs_admin.conf import dbs_settings
from dbs_admin.console import audit
from dbs_admin.console.access import admin_context
from dbs_admin.console.forms import target_choices
from dbs_admin.console.restore_views import explain_key_failure
from dbs_admin.console.upload_handler import IDENTITY_FIELD, SealedUploadHandler
from dbs_admin.drills.identity import drill_identity_configured
from dbs_admin.jobs import launch
from dbs_admin.jobs.handed_keys import open_identity
from dbs_admin.models import AuditEvent
from dbs_admin.targets import get_target


class RunDrillForm(forms.Form):
    target = forms.ChoiceField(choices=(), help_text="The newest backup of this target is drilled.")
    passphrase = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        help_text="The backup's passphrase or, with an identity file, the identity's.",
    )

    def __init__(self, *args, needs_key: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.needs_key = needs_key
        self.fields["target"].choices = target_choices()
        self.fields["target"].initial = dbs_settings.DEFAULT_TARGET
        self.fields["passphrase"].required = needs_key


def changelist_url() -> str:
    return reverse("admin:dbs_admin_drillreport_changelist")


def _render(request: HttpRequest, form: RunDrillForm, error: str | None = None, status: int = 200) -> HttpResponse:
    context = {**admin_context(request, "Run a restore drill"), "form": form, "error": error,
               "identity_field": IDENTITY_FIELD, "configured": drill_identity_configured(),
               "identity_env": dbs_settings.DRILL_IDENTITY_PASSPHRASE_ENV}
    return render(request, "dbs_admin/drills/run.html", context, status=status)


def run_drill_view(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: queue the drill (the upload handler is installed before anything reads the body)."""
    if request.method != "POST":
        return _render(request, RunDrillForm(needs_key=not drill_identity_configured()))
    handler = SealedUploadHandler(request)
    request.upload_handlers = [handler]
    return _post(request, handler)


@csrf_protect
@sensitive_post_parameters("passphrase")
@sensitive_variables("passphrase", "identity_file", "key")
def _post(request: HttpRequest, handler: SealedUploadHandler) -> HttpResponse:
    request.FILES  # noqa: B018 - parse the body now (the identity file is kept in memory)
    configured = drill_identity_configured()
    form = RunDrillForm(request.POST, needs_key=False)
    if handler.error:
        return _render(request, RunDrillForm(needs_key=not configured), handler.error, status=400)
    if not form.is_valid():
        return _render(request, RunDrillForm(request.POST, needs_key=not configured), status=400)
    target = form.cleaned_data["target"]
    passphrase = form.cleaned_data["passphrase"] or None
    identity_file = handler.identity or None
    if passphrase is None and not configured:
        # The plain button (no key fields) lands here when no identity is configured: ask for the key.
        return _render(request, RunDrillForm(initial={"target": target}, needs_key=True), status=200)
    if passphrase is not None:
        error = _check_key(target, passphrase, identity_file)
        if error:
            audit.record(request, "drill", outcome=AuditEvent.Outcome.DENIED, detail=error, object_repr=target)
            return _render(request, RunDrillForm(initial={"target": target}, needs_key=True), error, status=400)
    try:
        job = launch.queue_drill(target=target, user=request.user, passphrase=passphrase,
                                 identity_file=identity_file.decode("ascii") if identity_file else None)
    except launch.QueueUnavailable as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(changelist_url())
    key = "the given key" if passphrase is not None else "the configured drill identity"
    audit.record(request, "drill", object_repr=target, detail=f"job {job.pk} queued: newest backup, {key}")
    messages.success(request, f"Drill of the newest backup on {target!r} queued (job #{job.pk}).")
    return HttpResponseRedirect(reverse("dbs_admin:job", args=[job.pk]))


@sensitive_variables("passphrase", "identity_file")
def _check_key(target: str, passphrase: str, identity_file: bytes | None) -> str | None:
    """None when the key opens the newest backup of ``target``; else one sentence saying why not."""
    from dbs_admin.backups.api import read_manifest
    from dbs_admin.errors import DbsError

    try:
        files = get_target(target).list()
    except DbsError as exc:
        return str(exc)
    if not files:
        return f"Target {target!r} holds no backup yet: back up first, then drill it."
    try:
        if identity_file is not None:
            read_manifest(files[0].name, target=target, identity=open_identity(identity_file, passphrase))
        else:
            read_manifest(files[0].name, target=target, passphrase=passphrase)
    except Exception as exc:  # every failure gets one sentence; nothing was queued
        return explain_key_failure(exc)
    return None
