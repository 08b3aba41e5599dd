"""Running a Job from a Celery task: state changes, throttled progress, heartbeat and cancel.

Why these pieces:
- Progress callbacks of the services may fire thousands of times; writing
  each to the database would slow the job and hammer SQLite. :class:`JobRun`
  writes at most ``WRITE_INTERVAL`` apart (about two writes a second) plus
  every stage change and the end.
- A worker killed with SIGKILL (OOM, a host gone) cannot mark its job
  failed. A heartbeat thread stamps ``heartbeat_at`` every few seconds; the
  reaper (``reaper.py``) turns jobs whose heartbeat stopped into LOST.
- ``acks_late`` redelivers a task whose worker died; :meth:`JobRun.claim`
  only starts a QUEUED job, so a redelivered message never re-runs a job the
  reaper already declared lost.
- Unattended jobs (the schedule's) that fail are mailed to ADMINS where they
  end (``unattended_alerts.py``): nobody watches them.
- While a job runs, ``dbs_admin.signals`` knows it (``set_current_job``), so
  the services' ``backup_*``/``restore_*``/``drill_*`` signals carry it.
- A job that fails fails its Celery task too (:class:`JobFailed`, raised by
  the tasks once the job's state is recorded), so Flower, Sentry's Celery
  integration and ``celery events`` see the failure.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from django.db import connection
from django.utils import timezone

from dbs_admin import signals
from dbs_admin.conf import dbs_settings
from dbs_admin.jobs import handoff, locks
from dbs_admin.jobs import unattended_alerts as alerts
from dbs_admin.jobs.progress_plan import SIZING, ProgressPlan
from dbs_admin.jobs.workspace import alive_file, remove_partial_files
from dbs_admin.models import Job

log = logging.getLogger("dbs_admin.jobs")

WRITE_INTERVAL = 0.5  # seconds between progress writes (at most two a second)
CANCEL_POLL_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 3.0


class JobFailed(Exception):
    """Raised by a task after its job was recorded as failed: the Celery task fails with the job's message."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"{job.get_kind_display()} job #{job.pk} failed: {job.message}")
        self.job_id = job.pk


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
        self._signals_token = None
        self._plan = ProgressPlan(job.kind, uploads=_uploads(job), read_back=_read_back(job))

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
            self._signals_token = signals.set_current_job(self.job)
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
            values.setdefault("stage", "done")  # a finished job never shows the stage it was in ("validating")
        ended = Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(**values)
        remove_partial_files(self.job.partial_files)
        Job.objects.filter(pk=self.job.pk).update(partial_files=[])
        alive_file(self.job).unlink(missing_ok=True)
        locks.release_all(self.job)
        if self._signals_token is not None:
            try:
                signals.reset_current_job(self._signals_token)
            except ValueError:  # finished from another context than it was claimed in: forget it there
                signals.set_current_job(None)
            self._signals_token = None
        self.job.refresh_from_db()
        if ended and state == Job.State.FAILED:  # not when the reaper had already declared it lost
            alerts.alert_if_unattended(self.job)

    # -- callbacks for the services (no database access here) -------------------
    def progress(self, stage: str, done: int, total: int | None) -> None:
        """The stage's own figures (``done`` of ``total`` rows, files or bytes) for the text under the bar; the
        bar itself is the whole job's fraction (``progress_plan``), which only moves forward."""
        fraction = self._plan.fraction(stage, done, total)
        if stage == SIZING:  # an estimate for the bar, not a stage to show
            return
        self._queue(stage=stage[:100], bytes_done=done, bytes_total=total, progress=fraction)

    def stage(self, stage: str) -> None:
        self._queue(stage=stage[:100], progress=self._plan.fraction(stage, 0, None))

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


def _target_kinds(job: Job) -> dict[str, str]:
    params = job.params or {}
    names = dict.fromkeys([params.get("target") or dbs_settings.DEFAULT_TARGET, *(params.get("copies") or [])])
    return {name: (dbs_settings.TARGETS.get(name) or {}).get("kind", "local") for name in names}


def _uploads(job: Job) -> int:
    """How many of a backup job's targets the sealed file is uploaded to (a local folder links it in place)."""
    return sum(1 for kind in _target_kinds(job).values() if kind != "local")


def _read_back(job: Job) -> tuple[str, ...]:
    """The targets whose upload is verified by reading it back once, with its own progress (SFTP)."""
    return tuple(name for name, kind in _target_kinds(job).items() if kind == "sftp")


def send(task, job: Job, **kwargs) -> None:
    """Send ``task`` for ``job`` and record the Celery task id on the job (shown on its page, used to revoke)."""
    kwargs = {"job_id": job.pk, **kwargs}
    result = task.apply_async(kwargs=kwargs)
    Job.objects.filter(pk=job.pk).update(celery_task_id=result.id or "", touched_at=timezone.now(),
                                         dispatch={"task": task.name, "kwargs": kwargs})


def resend(job: Job) -> bool:
    """Send a queued job's recorded message again (the reaper: the first went with a dead worker or broker).

    A duplicate delivery is harmless: only one worker can claim a QUEUED job. False when nothing is recorded.
    """
    from celery import current_app

    task_name, kwargs = job.dispatch.get("task"), job.dispatch.get("kwargs")
    if not task_name or not isinstance(kwargs, dict):
        return False
    handoff.extend(kwargs.get("secret_ref"))  # the key waits for the new message as long as for the first
    result = current_app.send_task(task_name, kwargs=kwargs)
    Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(celery_task_id=result.id or "")
    return True
