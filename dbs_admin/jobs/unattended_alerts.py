"""Tell the site's ADMINS when unattended work did not happen: a nightly backup must not fail in silence.

Why only unattended jobs (no user started them: Celery beat's backups, the
retention that follows them): a job started from the console shows its
outcome on the screen of whoever started it. A scheduled backup runs at
night; its failure, a worker lost half-way, a job no worker ever took, or a
run skipped because the previous one still held the target would otherwise
show only as an ageing "last backup" on the dashboard days later. Drills
alert through their own report (``drills/alerts.py``). A broken mail set-up
is logged, never raised (``notify.py``): the job's recorded outcome matters more.
"""

from __future__ import annotations

from dbs_admin.models import Job
from dbs_admin.notify import mail_admins_or_log

UNATTENDED_KINDS = (Job.Kind.BACKUP, Job.Kind.PRUNE, Job.Kind.VALIDATE)


def alert_if_unattended(job: Job) -> bool:
    """Mail ADMINS about ``job`` (failed, lost or skipped) if no user started it; True when a mail went out."""
    if job.created_by_id is not None or job.kind not in UNATTENDED_KINDS:
        return False
    subject, body = message(job)
    return mail_admins_or_log(subject, body, about=f"job {job.pk}")


def alert_failed_copies(job: Job, name: str, failed: dict[str, str]) -> bool:
    """Mail ADMINS that some copies of an unattended backup failed (the others were stored); True when sent."""
    if job.created_by_id is not None or job.kind != Job.Kind.BACKUP:
        return False
    targets = ", ".join(repr(t) for t in failed)
    subject = f"Scheduled backup #{job.pk}: the copy on {targets} FAILED"
    lines = [f"Scheduled backup #{job.pk} wrote {name}, but not every copy could be stored.", ""]
    lines += [f"Target {t!r}: {' '.join(why.split())}" for t, why in failed.items()]
    lines += ["", "The other copies are stored and verified. Until the failed target works again it holds no "
              "new backups: see the Backups console and `manage.py dbs_list`."]
    return mail_admins_or_log(subject, "\n".join(lines), about=f"job {job.pk}")


def message(job: Job) -> tuple[str, str]:
    what = "Scheduled backup" if job.params.get("scheduled") else job.get_kind_display()
    outcome = "SKIPPED" if job.state == Job.State.CANCELLED else "FAILED"
    reason = " ".join(job.message.split())  # one line: a mail subject must not hold a newline
    target = job.params.get("target") or ""
    subject = f"{what} #{job.pk}{f' on {target!r}' if target else ''} {outcome}: {reason[:120]}"
    lines = [
        f"{what} #{job.pk} ({job.get_state_display()}), started by the schedule, not by a person.",
        "",
        f"Why: {job.message}",
        "",
        f"Target: {target or '-'}    kind: {job.params.get('kind', '-')}    label: {job.params.get('label') or '-'}",
        f"Queued:   {_when(job.created_at)}",
        f"Started:  {_when(job.started_at)}",
        f"Finished: {_when(job.finished_at)}",
        f"Worker:   {job.worker or '-'}",
        "",
        "Until a backup succeeds, the newest backup is older than your schedule promises. See the Jobs list of "
        "the Backups console, and `manage.py dbs_status`.",
    ]
    return subject, "\n".join(lines)


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S %Z}" if moment else "-"
