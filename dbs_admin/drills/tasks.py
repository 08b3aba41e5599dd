"""The Celery task behind the weekly schedule and the console's *Run drill* button.

Thin: it wraps :func:`run_drill` in the console's Job runner (state,
throttled progress, heartbeat, cancel). No secret travels in the message:
the drill opens backups with the configured DRILL_IDENTITY.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import close_old_connections

from dbs_admin.console.jobs import JobRun, send
from dbs_admin.drills.runner import run_drill
from dbs_admin.models import Job

log = logging.getLogger("dbs_admin.drills")

TASK_NAME = "dbs_admin.drill"  # the name the console's Schedules page schedules


def queue_drill(*, target: str | None = None, user=None) -> Job:
    """Create a drill Job and send the task (used by the admin button; beat calls the task directly)."""
    job = Job.objects.create(kind=Job.Kind.DRILL, created_by=user, params={"target": target})
    send(run_drill_task, job, target=target)
    return job


def summary(report) -> str:
    if report.passed:
        return f"Drill #{report.pk} of {report.backup_name} passed; restore took {report.restore_seconds or 0:.1f} s."
    failed = [c.name for c in report.checks.all() if not c.passed]
    why = ("failed checks: " + ", ".join(failed)) if failed else (report.error or "no check ran")
    return f"Drill #{report.pk} of {report.backup_name} FAILED ({why})."


@shared_task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True, soft_time_limit=6 * 3600,
             time_limit=6 * 3600 + 300)
def run_drill_task(self, job_id: int | None = None, target: str | None = None, source: str | None = None) -> None:
    close_old_connections()
    if job_id is None:  # from beat: the job is created here so the console shows scheduled drills too
        job = Job.objects.create(kind=Job.Kind.DRILL, params={"target": target, "source": source})
    else:
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            log.warning("drill job %s does not exist; nothing to do", job_id)
            return
    run = JobRun(job, task_id=self.request.id or "")
    if not run.claim():
        return
    try:
        report = run_drill(source, target=target, job=job, progress=run.progress, cancel=run.cancel_requested)
    except BaseException as exc:
        log.exception("drill job %s crashed", job.pk)
        run.finish(Job.State.FAILED, f"Internal error ({type(exc).__name__}); see the worker log.")
        if not isinstance(exc, Exception):
            raise
        return
    if run.cancel_requested() and not report.passed:
        run.finish(Job.State.CANCELLED, "Cancelled; the scratch database was dropped.")
    elif report.passed:
        run.finish(Job.State.SUCCEEDED, summary(report), backup=report.backup)
    else:
        run.finish(Job.State.FAILED, summary(report), backup=report.backup)
