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
- ``acks_late`` redelivers a task whose worker died; :meth:`JobRun.claim`
  only starts a QUEUED job, so a redelivered message never re-runs a job the
  reaper already declared lost.
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

from ..conf import dbs_settings
from ..models import Job
from . import handoff, locks

log = logging.getLogger("dbs_admin.jobs")

WRITE_INTERVAL = 0.5  # seconds between progress writes
CANCEL_POLL_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 3.0


def private_root() -> Path:
    return Path(dbs_settings.PRIVATE_ROOT)


def job_dir(job: Job) -> Path:
    """A private scratch folder per job (outside MEDIA_ROOT), removed when the job ends."""
    return private_root() / "jobs" / str(job.pk)


class JobRun:
    """The worker side of one Job: claim it, report progress, beat, honour cancel, finish it."""

    def __init__(self, job: Job, *, task_id: str = "", worker: str = "") -> None:
        self.job = job
        self.task_id = task_id
        self.worker = worker or socket.gethostname()
        self._last_write = 0.0
        self._last_stage = None
        self._last_cancel_poll = 0.0
        self._cancelled = False
        self._stop = threading.Event()
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
            self._start_heartbeat()
        return bool(claimed)

    def set_partial_files(self, paths: list[str]) -> None:
        self.job.partial_files = paths
        Job.objects.filter(pk=self.job.pk).update(partial_files=paths)

    def finish(self, state: str, message: str = "", **fields) -> None:
        self._stop_heartbeat()
        now = timezone.now()
        values = {"state": state, "message": message[:4000], "finished_at": now, "heartbeat_at": now, **fields}
        if state == Job.State.SUCCEEDED:
            values["progress"] = 1.0
        Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(**values)
        remove_partial_files(self.job.partial_files)
        Job.objects.filter(pk=self.job.pk).update(partial_files=[])
        locks.release_all(self.job)
        self.job.refresh_from_db()

    # -- callbacks for the services ----------------------------------------
    def progress(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_write < WRITE_INTERVAL:
            return
        self._last_stage, self._last_write = stage, now
        fraction = min(1.0, done / total) if total else 0.0
        Job.objects.filter(pk=self.job.pk).update(
            stage=stage[:100], bytes_done=done, bytes_total=total, progress=fraction, heartbeat_at=timezone.now()
        )

    def stage(self, stage: str) -> None:
        self._last_stage = stage
        Job.objects.filter(pk=self.job.pk).update(stage=stage[:100], heartbeat_at=timezone.now())

    def cancel_requested(self) -> bool:
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last_cancel_poll >= CANCEL_POLL_INTERVAL:
            self._last_cancel_poll = now
            self._cancelled = Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return self._cancelled

    # -- heartbeat -----------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"dbs-heartbeat-{self.job.pk}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(HEARTBEAT_INTERVAL):
                try:
                    Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(heartbeat_at=timezone.now())
                except Exception:  # a busy database must not kill the job; the next beat retries
                    log.warning("heartbeat of job %s failed", self.job.pk, exc_info=True)
        finally:
            connection.close()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


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


def reap_lost_jobs(timeout: float | None = None) -> list[int]:
    """Declare RUNNING jobs without a recent heartbeat LOST; clean their files and locks. Returns their ids."""
    timeout = dbs_settings.JOB_HEARTBEAT_TIMEOUT if timeout is None else timeout
    cutoff = timezone.now() - timedelta(seconds=timeout)
    lost: list[int] = []
    for job in Job.objects.filter(state=Job.State.RUNNING, heartbeat_at__lt=cutoff):
        updated = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, heartbeat_at__lt=cutoff).update(
            state=Job.State.LOST, finished_at=timezone.now(),
            message=f"Failed (worker lost): no heartbeat from {job.worker or 'the worker'} for over {int(timeout)} s.",
        )
        if not updated:
            continue
        removed = remove_partial_files(job.partial_files)
        Job.objects.filter(pk=job.pk).update(partial_files=[])
        locks.release_all(job)
        log.warning("job %s lost (worker %s); removed %d partial file(s)", job.pk, job.worker, len(removed))
        lost.append(job.pk)
    handoff.purge_expired()
    return lost
