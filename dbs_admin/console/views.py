"""Console pages: Back up now (HTMX), job progress and cancel, Schedules."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from dbs_admin.console import audit
from dbs_admin.console.access import admin_context, console_view
from dbs_admin.console.downloads import export_context
from dbs_admin.console.forms import BackupNowForm, DrillScheduleForm, TargetScheduleForm, target_choices
from dbs_admin.drills.health import setup_sentence
from dbs_admin.jobs import launch, schedules
from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.models import Backup, Job

# Stages whose progress counts items (rows, files) rather than bytes.
# Stages whose figures are counts (shown as "312 of 722 rows"); the others' figures are bytes, except those
# whose figures mean nothing to a reader (mixed units: the bar says enough).
COUNTED_STAGES = {"rows": "rows", "checking blocks": "blocks"}
UNSHOWN_FIGURES = {"decrypting"}


ETA_AFTER = 3.0  # seconds: before that, a rate is mostly start-up and an ETA would be noise


def clock(seconds: float) -> str:
    """45 s, 2 min 05 s, 1 h 02 min: elapsed and remaining time under a bar."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_context(job: Job) -> dict:
    """Stage, percent, the stage's own figures, elapsed and ETA of a job, for the progress partial.

    The percent is the whole job's (``jobs.progress_plan``: every stage has its share, by the bytes it moves);
    the ETA appears once the job has run a few seconds and moved, from the rate so far.
    """
    now = timezone.now()
    started = job.started_at
    elapsed = max(0.0, ((job.finished_at or now) - started).total_seconds()) if started else 0.0
    fraction = 1.0 if job.state == Job.State.SUCCEEDED else job.progress
    percent = round(100 * fraction, 1)
    eta = None
    if job.state == Job.State.RUNNING and elapsed >= ETA_AFTER and 0.005 < fraction < 1.0:
        eta = clock(elapsed * (1 - fraction) / fraction)
    return {"job": job, "percent": percent, "elapsed": clock(elapsed), "eta": eta,
            "counted": job.stage in COUNTED_STAGES or job.stage.startswith("check: "),
            "unit": COUNTED_STAGES.get(job.stage, "checks"),
            "figures": job.stage not in UNSHOWN_FIGURES,
            "stage": "done" if job.state == Job.State.SUCCEEDED else job.stage}


RECENT = timedelta(minutes=10)


def _current_backup_job(request: HttpRequest) -> Job | None:
    """The user's backup job that is running, or ended in the last minutes (so its result is not missed):
    leaving the page and coming back shows the same bar. ``?new=1`` asks for a fresh form."""
    if request.GET.get("new"):
        return None
    job = Job.objects.filter(kind=Job.Kind.BACKUP, created_by=request.user).first()
    if job is None or (job.finished and (job.finished_at or job.created_at) < timezone.now() - RECENT):
        return None
    return job


@sensitive_post_parameters("passphrase", "passphrase_again")
@console_view
def backup_now(request: HttpRequest) -> HttpResponse:
    """GET: the form (or the running job's bar). POST (HTMX or not): queue a backup job."""
    if request.method == "POST":
        form = BackupNowForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                job = start_backup(request, form.cleaned_data)
            except launch.QueueUnavailable as exc:  # the broker is down: one sentence, no job left behind
                form.add_error(None, str(exc))
                status = 503
            else:
                if request.htmx:
                    return render(request, "dbs_admin/_job_progress.html", progress_context(job))
                return redirect("dbs_admin:job", pk=job.pk)
        if request.htmx:  # htmx swaps 2xx responses only: the form comes back with its errors
            return render(request, "dbs_admin/_backup_form.html", {"form": form})
        return render(request, "dbs_admin/backup_now.html", {**admin_context(request, "Back up now"), "form": form},
                      status=status)
    job = _current_backup_job(request)
    context = {**admin_context(request, "Back up now"), "form": BackupNowForm(),
               **(progress_context(job) if job else {})}
    return render(request, "dbs_admin/backup_now.html", context)


@sensitive_variables("data")
def start_backup(request: HttpRequest, data: dict) -> Job:
    """Queue the backup the form describes (``launch.queue_backup`` seals the passphrase) and audit it."""
    copies = list(data.get("copies") or [])
    job = launch.queue_backup(user=request.user, kind=data["kind"], target=data["target"], copies=copies,
                              label=data.get("label", ""), passphrase=data.get("passphrase") or None)
    audit.record(request, "backup", object_repr=f"job {job.pk}",
                 detail=f"{data['kind']} to {', '.join([data['target'], *copies])} queued")
    return job


@console_view
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Full page of one job; with HTMX, just the progress partial (polled until the job ends)."""
    job = get_object_or_404(Job.objects.select_related("backup"), pk=pk)
    if job.state in (Job.State.RUNNING, Job.State.QUEUED) and reap_lost_jobs():  # dead or never started: say so
        job.refresh_from_db()
    context = {**progress_context(job), **export_context(job, request.user)}  # an export: its download link
    if request.htmx:
        return render(request, "dbs_admin/_job_progress.html", context)
    return render(request, "dbs_admin/job.html", {**admin_context(request, str(job)), **context})


@console_view
@require_POST
def validate_backup(request: HttpRequest, pk: int) -> HttpResponse:
    """The backup page's Validate button: queue a structural check of this backup and show its job."""
    backup = get_object_or_404(Backup, pk=pk)
    try:
        job = launch.queue_validate(user=request.user, backup=backup)
    except launch.QueueUnavailable as exc:
        messages.error(request, str(exc))
        return redirect("admin:dbs_admin_backup_change", backup.pk)
    audit.record(request, "validate", backup=backup, detail=f"job {job.pk} queued")
    return redirect("dbs_admin:job", pk=job.pk)


@console_view
@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the job to stop. A queued job ends at once; a running one stops at its next check."""
    job = get_object_or_404(Job, pk=pk)
    if not job.finished:
        Job.objects.filter(pk=pk).update(cancel_requested=True)
        Job.objects.filter(pk=pk, state=Job.State.QUEUED).update(
            state=Job.State.CANCELLED, finished_at=timezone.now(), message="Cancelled before it started."
        )
        audit.record(request, "cancel", backup=job.backup, object_repr=str(job))
    job.refresh_from_db()
    if request.htmx:
        return render(request, "dbs_admin/_job_progress.html", progress_context(job))
    return redirect("dbs_admin:job", pk=pk)


@console_view
def schedules_page(request: HttpRequest) -> HttpResponse:
    """Daily backup time and retention per target, and the weekly drill, over django-celery-beat.

    A schedule that cannot run (no recipient key, no drill identity) cannot be switched on: its checkbox
    says why, and the page says in one sentence what to set up.
    """
    targets = [name for name, _ in target_choices()]
    if request.method == "POST":
        target_forms = [(t, TargetScheduleForm(request.POST, prefix=f"t-{t}", target=t)) for t in targets]
        drill_form = DrillScheduleForm(request.POST, prefix="drill")
        if all(f.is_valid() for _, f in target_forms) and drill_form.is_valid():
            for target, form in target_forms:
                d = form.cleaned_data
                schedules.save_target(target, enabled=d["enabled"], at=d["at"], copies=d["copies"], retention={
                    "last": d["keep_last"], "daily": d["keep_daily"],
                    "weekly": d["keep_weekly"], "monthly": d["keep_monthly"],
                })
            d = drill_form.cleaned_data
            schedules.save_drill(enabled=d["enabled"], weekday=d["weekday"], at=d["at"])
            schedules.ensure_reaper()
            audit.record(request, "schedules", detail="schedules saved")
            messages.success(request, "Schedules saved; Celery beat picks them up without a restart.")
            return redirect("dbs_admin:schedules")
        status = 400
    else:
        schedules.enable_ready_schedules()
        target_forms = [(t, TargetScheduleForm(initial=schedules.target_initial(t), prefix=f"t-{t}", target=t))
                        for t in targets]
        drill_form = DrillScheduleForm(initial=schedules.drill_initial(), prefix="drill")
        status = 200
    context = {**admin_context(request, "Schedules"), "target_forms": target_forms, "drill_form": drill_form,
               "setup_missing": setup_sentence(), "has_errors": status == 400,
               "next_runs": schedules.next_runs(), "time_zone": timezone.get_current_timezone_name()}
    return render(request, "dbs_admin/schedules.html", context, status=status)
