"""Running a Job from a Celery task: state changes, throttled progress, heartbeat, cancel, lost workers.

Why these pieces:
- Progress callbacks of the services may fire thousands of times; writing
  each to the database would slow the job and hammer SQLite. :class:`JobRun`
  writes at most ``WRITE_INTERVAL`` apart (about two writes a second) plus
  every stage change and the end.
- A worker killed with SIGKILL (OOM, a host gone) cannot mark its job
  failed. A heartbeat thread stamps ``heartbeat_at`` every few seconds;
  :func:`reap_lost_jobs` turns RUNNING jobs whose heartbeat is older than
  ``DBS_ADMIN["JOB_HEARTBEAT_TIMEOUT"]`` into LOST, removes their partial
  files and releases their target locks.
- A job whose broker message is lost (a broker restarted without its data)
  would show "Queued" forever. The same reaper fails QUEUED jobs older than
  ``DBS_ADMIN["JOB_QUEUE_TIMEOUT"]`` once no job is running, saying why, so
  the console never claims that work is pending when it is not, nor fails
  a job that is only waiting behind a long one.
- ``acks_late`` redelivers a task whose worker died; :meth:`JobRun.claim`
  only starts a QUEUED job, so a redelivered message never re-runs a job the
  reaper already declared lost.
- Unattended jobs (the schedule's) that fail, are lost or never start are
  mailed to ADMINS where they end (``alerts.py``): nobody watches them.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

from django.db import connection
from django.utils import timezone

from dbs_admin.conf import dbs_settings
from dbs_admin.console import alerts, handoff, locks, uploads
from dbs_admin.console.dashboard import human_duration
from dbs_admin.models import Job

log = logging.getLogger("dbs_admin.jobs")

WRITE_INTERVAL = 0.5  # seconds between progress writes (at most two a second)
CANCEL_POLL_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 3.0


def private_root() -> Path:
    return Path(dbs_settings.PRIVATE_ROOT)


def job_dir(job: Job) -> Path:
    """A private scratch folder per job (outside MEDIA_ROOT), removed when the job ends."""
    return private_root() / "jobs" / str(job.pk)


class JobRun:
    """The worker side of one Job: claim it, report progress, beat, honour cancel, finish it.

    While the service runs, every database access of the job goes through
    a companion thread with its own connection. Why: the services run in a
    transaction on the default connection (a READ ONLY snapshot for backups
    on PostgreSQL, one write transaction for restores); a progress write on
    that connection would fail there, or stay invisible until the end. The
    thread writes the latest progress at most every ``WRITE_INTERVAL``,
    stamps the heartbeat, polls ``cancel_requested``, and touches a file
    next to the job's scratch folder, so that on SQLite (one writer at a
    time, same host by necessity) a long restore holding the write lock is
    not mistaken for a dead worker.
    """

    def __init__(self, job: Job, *, task_id: str = "", worker: str = "") -> None:
        self.job = job
        self.task_id = task_id
        self.worker = worker or socket.gethostname()
        self._lock = threading.Lock()
        self._pending: dict = {}
        self._cancelled = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # write now, not at the next interval
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def claim(self) -> bool:
        """QUEUED → RUNNING, atomically; False when the job is not QUEUED any more."""
        now = timezone.now()
        claimed = Job.objects.filter(pk=self.job.pk, state=Job.State.QUEUED).update(
            state=Job.State.RUNNING, started_at=now, heartbeat_at=now,
            celery_task_id=self.task_id, worker=self.worker, message="",
        )
        if claimed:
            self.job.refresh_from_db()
            self._touch_alive()
            self._thread = threading.Thread(target=self._companion, name=f"dbs-job-{self.job.pk}", daemon=True)
            self._thread.start()
        return bool(claimed)

    def set_partial_files(self, paths: list[str]) -> None:
        """Record what to remove if this worker dies, written at once: a crash right after must find it."""
        self.job.partial_files = list(paths)
        self._queue(partial_files=list(paths))
        self._wake.set()

    def finish(self, state: str, message: str = "", **fields) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        now = timezone.now()
        values = {"state": state, "message": message[:4000], "finished_at": now, "heartbeat_at": now, **fields}
        if state == Job.State.SUCCEEDED:
            values["progress"] = 1.0
        ended = Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(**values)
        remove_partial_files(self.job.partial_files)
        Job.objects.filter(pk=self.job.pk).update(partial_files=[])
        alive_file(self.job).unlink(missing_ok=True)
        locks.release_all(self.job)
        self.job.refresh_from_db()
        if ended and state == Job.State.FAILED:  # not when the reaper had already declared it lost
            alerts.alert_if_unattended(self.job)

    # -- callbacks for the services (no database access here) -------------------
    def progress(self, stage: str, done: int, total: int | None) -> None:
        fraction = min(1.0, done / total) if total else 0.0
        self._queue(stage=stage[:100], bytes_done=done, bytes_total=total, progress=fraction)

    def stage(self, stage: str) -> None:
        self._queue(stage=stage[:100])

    def cancel_requested(self) -> bool:
        return self._cancelled

    def _queue(self, **fields) -> None:
        with self._lock:
            self._pending.update(fields)

    # -- the companion thread ------------------------------------------------
    def _touch_alive(self) -> None:
        path = alive_file(self.job)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError:
            pass

    def _companion(self) -> None:
        last_beat = last_poll = 0.0
        try:
            while True:
                self._wake.wait(WRITE_INTERVAL)
                self._wake.clear()
                stopping = self._stop.is_set()
                now = time.monotonic()
                self._touch_alive()
                with self._lock:
                    fields, self._pending = self._pending, {}
                try:
                    if fields or now - last_beat >= HEARTBEAT_INTERVAL:
                        Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(
                            heartbeat_at=timezone.now(), **fields)
                        last_beat = now
                    if not stopping and now - last_poll >= CANCEL_POLL_INTERVAL:
                        last_poll = now
                        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                            self._cancelled = True
                except Exception:  # a busy database must not kill the job; the next round retries
                    log.warning("progress/heartbeat of job %s not written", self.job.pk, exc_info=True)
                    with self._lock:
                        self._pending = {**fields, **self._pending}
                if stopping:
                    return
        finally:
            connection.close()


def send(task, job: Job, **kwargs) -> None:
    """Send ``task`` for ``job`` and record the Celery task id on the job (shown on its page, used to revoke)."""
    result = task.apply_async(kwargs={"job_id": job.pk, **kwargs})
    Job.objects.filter(pk=job.pk).update(celery_task_id=result.id or "")


def alive_file(job: Job) -> Path:
    return private_root() / "jobs" / f"{job.pk}.alive"


def _alive_on_this_host(job: Job, cutoff_ts: float) -> bool:
    try:
        return alive_file(job).stat().st_mtime >= cutoff_ts
    except OSError:
        return False


def _deletable_roots() -> list[Path]:
    """Folders partial files may live in; anything else is never deleted by the reaper."""
    roots = [private_root()]
    for conf in dbs_settings.TARGETS.values():
        if conf.get("kind") == "local" and conf.get("path"):
            roots.append(Path(conf["path"]))
    return [r.resolve() for r in roots]


def remove_partial_files(paths: list[str]) -> list[str]:
    """Remove files, folders and ``*`` patterns under the private root or a local target; return what went."""
    removed: list[str] = []
    roots = _deletable_roots()
    for entry in paths or []:
        p = Path(entry)
        candidates = list(p.parent.glob(p.name)) if "*" in p.name else [p]
        for c in candidates:
            resolved = c.resolve()
            if not any(resolved.is_relative_to(r) and resolved != r for r in roots):
                log.warning("not removing %s: outside the private root and local targets", c)
                continue
            if c.is_dir():
                shutil.rmtree(c, ignore_errors=True)
                removed.append(str(c))
            elif c.exists() or c.is_symlink():
                c.unlink(missing_ok=True)
                removed.append(str(c))
    return removed


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
    return lost
