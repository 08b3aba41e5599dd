"""The reaper: jobs whose worker died become LOST, jobs no worker took are failed, their leftovers removed.

Why:
- A worker killed with SIGKILL (OOM, a host gone) cannot mark its job
  failed: :func:`reap_lost_jobs` turns RUNNING jobs whose heartbeat is older
  than ``DBS_ADMIN["JOB_HEARTBEAT_TIMEOUT"]`` into LOST, removes their
  partial files and releases their target locks.
- A job whose broker message is lost (a broker restarted without its data)
  would show "Queued" forever. The same reaper fails QUEUED jobs older than
  ``DBS_ADMIN["JOB_QUEUE_TIMEOUT"]`` once no job is running, saying why, so
  the console never claims that work is pending when it is not, nor fails
  a job that is only waiting behind a long one.
- Beat runs it every minute (``schedules.ensure_reaper``); the dashboard and
  job pages run it too, so a site without beat still sees the truth.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from dbs_admin.backups.sources import sweep_leftovers
from dbs_admin.conf import dbs_settings
from dbs_admin.humanize import human_duration
from dbs_admin.jobs import handoff, locks, uploads
from dbs_admin.jobs import unattended_alerts as alerts
from dbs_admin.jobs.workspace import alive_file, remove_partial_files
from dbs_admin.models import Job

log = logging.getLogger("dbs_admin.jobs")


def _alive_on_this_host(job: Job, cutoff_ts: float) -> bool:
    try:
        return alive_file(job).stat().st_mtime >= cutoff_ts
    except OSError:
        return False


def queue_is_moving(grace: float | None = None) -> bool:
    """True while some worker shows life: a job running with a fresh heartbeat, or one that ended within
    ``grace`` seconds (the worker is about to take the next message).

    Why: a job queued behind a long one (one worker, a backup of many hours) is waiting, not lost.
    """
    grace = dbs_settings.JOB_HEARTBEAT_TIMEOUT if grace is None else grace
    recent = timezone.now() - timedelta(seconds=grace)
    for job in Job.objects.filter(state=Job.State.RUNNING).only("pk", "heartbeat_at"):
        if (job.heartbeat_at and job.heartbeat_at >= recent) or _alive_on_this_host(job, recent.timestamp()):
            return True
    # Ended by a worker: it had started the job, and did not vanish (LOST is the reaper's doing).
    ended = Job.objects.filter(started_at__isnull=False, finished_at__gte=recent).exclude(state=Job.State.LOST)
    return ended.exists()


def fail_stale_queued_jobs(timeout: float | None = None) -> list[int]:
    """Fail QUEUED jobs no worker has started within ``timeout`` seconds; returns their ids.

    Not while the queue is moving (:func:`queue_is_moving`): then they may be waiting their turn, and they
    are judged once the queue stops. ``claim`` only starts a QUEUED job, so if the message does turn up
    later it runs nothing.
    """
    timeout = dbs_settings.JOB_QUEUE_TIMEOUT if timeout is None else timeout
    waited = timedelta(seconds=timeout)
    cutoff = timezone.now() - waited
    stale = list(Job.objects.filter(state=Job.State.QUEUED, created_at__lt=cutoff).values_list("pk", flat=True))
    if not stale or queue_is_moving():
        return []
    failed = []
    for pk in stale:
        if Job.objects.filter(pk=pk, state=Job.State.QUEUED, created_at__lt=cutoff).update(
            state=Job.State.FAILED, finished_at=timezone.now(),
            message=(f"Never started: no worker took this job within {human_duration(waited)}. Check that a "
                     "Celery worker is running and reaches the broker (`manage.py dbs_status`), then start it again."),
        ):
            log.warning("job %s never started within %s; failed", pk, human_duration(waited))
            failed.append(pk)
            alerts.alert_if_unattended(Job.objects.get(pk=pk))
    return failed


def reap_lost_jobs(timeout: float | None = None) -> list[int]:
    """Declare RUNNING jobs without a recent heartbeat LOST; clean their files and locks. Returns their ids.

    Also fails jobs that never started (:func:`fail_stale_queued_jobs`), returned with them, and removes
    expired hand-offs and abandoned uploads.
    """
    timeout = dbs_settings.JOB_HEARTBEAT_TIMEOUT if timeout is None else timeout
    cutoff = timezone.now() - timedelta(seconds=timeout)
    lost: list[int] = []
    for job in Job.objects.filter(state=Job.State.RUNNING, heartbeat_at__lt=cutoff):
        if _alive_on_this_host(job, cutoff.timestamp()):
            continue  # SQLite: the worker is alive but the database write lock is held by its restore
        updated = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, heartbeat_at__lt=cutoff).update(
            state=Job.State.LOST, finished_at=timezone.now(),
            message=f"Failed (worker lost): no heartbeat from {job.worker or 'the worker'} for over {int(timeout)} s.",
        )
        if not updated:
            continue
        removed = remove_partial_files(job.partial_files)
        Job.objects.filter(pk=job.pk).update(partial_files=[])
        locks.release_all(job)
        alive_file(job).unlink(missing_ok=True)
        log.warning("job %s lost (worker %s); removed %d partial file(s)", job.pk, job.worker, len(removed))
        lost.append(job.pk)
        job.refresh_from_db()
        alerts.alert_if_unattended(job)
    lost += fail_stale_queued_jobs()
    handoff.purge_expired()
    uploads.purge_abandoned()
    sweep_leftovers()  # work and staging folders of backups and restores killed on this host
    return lost
