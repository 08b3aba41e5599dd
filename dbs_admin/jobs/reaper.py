"""The reaper: jobs whose worker died become LOST, jobs no worker took are failed, their leftovers removed.

Why:
- A worker killed with SIGKILL (OOM, a host gone) cannot mark its job
  failed: :func:`reap_lost_jobs` turns RUNNING jobs whose heartbeat is older
  than ``DBS_ADMIN["JOB_HEARTBEAT_TIMEOUT"]`` into LOST, removes their
  partial files and releases their target locks.
- A job whose broker message is lost (held by a worker killed with it, or
  a broker restarted without its data) would show "Queued" forever. The
  same reaper sends a QUEUED job with no sign of life for
  ``DBS_ADMIN["JOB_QUEUE_TIMEOUT"]`` again, and fails it after a second
  loss once no job is running, saying why, so the console never claims
  that work is pending when it is not, nor fails a job that is only
  waiting behind a long one.
- Beat runs it every minute (``schedules.ensure_reaper``); the dashboard and
  job pages run it too, so a site without beat still sees the truth.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from dbs_admin.backups.sources import sweep_leftovers
from dbs_admin.conf import dbs_settings
from dbs_admin.humanize import human_duration
from dbs_admin.jobs import exports, handoff, locks, uploads
from dbs_admin.jobs import unattended_alerts as alerts
from dbs_admin.jobs.job_run import resend
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


def _last_sign_of_life(timeout: float):
    """Queued jobs with no sign of life (sent, sent again, a wait for a busy target) within ``timeout`` s."""
    cutoff = timezone.now() - timedelta(seconds=timeout)
    return Job.objects.filter(state=Job.State.QUEUED).filter(
        Q(touched_at__lt=cutoff) | Q(touched_at__isnull=True, created_at__lt=cutoff))


def fail_stale_queued_jobs(timeout: float | None = None) -> list[int]:
    """Send queued jobs that no worker took within ``timeout`` s again, or fail them; returns the failed ids.

    A queued job with no sign of life for ``JOB_QUEUE_TIMEOUT`` lost its message: it went with a worker
    killed while holding it (prefetched, or waiting for a busy target) or with a broker restarted without
    its data. The first time, the reaper sends it again (what was sent is recorded on the job; a duplicate
    delivery runs nothing, since only a QUEUED job can be claimed). Lost again, it is failed, but not while
    the queue is moving (:func:`queue_is_moving`): a job queued behind a long one is waiting its turn,
    and is sent again once per timeout instead.
    """
    timeout = dbs_settings.JOB_QUEUE_TIMEOUT if timeout is None else timeout
    waited = timedelta(seconds=timeout)
    stale = list(_last_sign_of_life(timeout).only("pk", "dispatch", "resends", "touched_at", "created_at"))
    if not stale:
        return []
    moving = queue_is_moving()
    failed = []
    for job in stale:
        if job.dispatch and (job.resends == 0 or moving):
            if _resend(job):
                continue
        if moving:
            continue
        again = f" (sent {job.resends + 1} times)" if job.resends else ""
        if _last_sign_of_life(timeout).filter(pk=job.pk).update(
            state=Job.State.FAILED, finished_at=timezone.now(),
            message=(f"Never started: no worker took this job within {human_duration(waited)}{again}. Check that a "
                     "Celery worker is running and reaches the broker (`manage.py dbs_status`), then start it again."),
        ):
            log.warning("job %s never started within %s; failed", job.pk, human_duration(waited))
            failed.append(job.pk)
            alerts.alert_if_unattended(Job.objects.get(pk=job.pk))
    return failed


def _resend(job: Job) -> bool:
    """Send ``job``'s recorded message again; False when the broker refused (the job is judged as lost)."""
    if not Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(
            resends=F("resends") + 1, touched_at=timezone.now()):
        return True  # taken meanwhile: nothing to do
    try:
        sent = resend(job)
    except Exception as exc:  # noqa: BLE001 - the broker is down: say so, judge the job next time
        log.warning("could not send queued job %s again: %s", job.pk, exc)
        return True
    if sent:
        log.warning("queued job %s showed no sign of life for %s s; sent it again", job.pk,
                    dbs_settings.JOB_QUEUE_TIMEOUT)
    return sent


def reap_lost_jobs(timeout: float | None = None) -> list[int]:
    """Declare RUNNING jobs without a recent heartbeat LOST; clean their files and locks. Returns their ids.

    Also fails jobs that never started (:func:`fail_stale_queued_jobs`), returned with them, and removes
    expired hand-offs, abandoned uploads and expired exports.
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
    exports.remove_expired()  # downloads' exports whose link expired
    sweep_leftovers()  # work and staging folders of backups and restores killed on this host
    from dbs_admin.backups.native_mysql import sweep_default_scratch  # MariaDB sites only need it

    sweep_default_scratch()  # scratch databases of killed native MariaDB restores
    return lost
