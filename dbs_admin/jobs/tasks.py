"""Every Celery task of dbs_admin: thin wrappers that run a Job around a service call.

Backups, restores, validation, pruning and drills run as Jobs (state,
progress, heartbeat, cancel: ``runner.py``); a history snapshot is a plain
task (``snapshot_object``) that the history service reaches through the hook
``wiring.py`` registers, so services never import Celery.

Every task receives a Job id and, when a passphrase is needed, only the
reference of a sealed hand-off (``handoff``), never the secret. Retries with
backoff are for transport errors (``TargetError``: an SFTP server away) only;
anything else fails the job with the service's own message, and then the
task itself (``JobFailed``), so Celery's own monitoring sees the failure.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from dbs_admin.backups.catalog import stored_copies
from dbs_admin.backups.errors import BackupError, CancelledError
from dbs_admin.backups.failures import first_line
from dbs_admin.backups.sources import sweep_leftovers
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.runner import run_drill
from dbs_admin.errors import DbsError
from dbs_admin.hosts import this_host
from dbs_admin.jobs import handoff, locks, ticks
from dbs_admin.jobs import unattended_alerts as alerts
from dbs_admin.jobs.handed_keys import HandedKey, KeyRefused
from dbs_admin.jobs.handoff import BACKUP_PURPOSE, DRILL_PURPOSE, EXPORT_PURPOSE, RESTORE_PURPOSE, VALIDATE_PURPOSE
from dbs_admin.jobs.job_run import JobFailed, JobRun, send
from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.jobs.workspace import job_dir, private_root, remote_entry
from dbs_admin.models import AuditEvent, Backup, Job
from dbs_admin.sealed import KeySlotError, SealedError
from dbs_admin.targets.errors import TargetError

log = logging.getLogger("dbs_admin.jobs")

SOFT_TIME_LIMIT = 6 * 3600
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 300
TRANSPORT_RETRIES = 3
LOCK_WAIT_SECONDS = 2  # a waiting job looks again this often; it waits as long as the holder lives

# Long jobs: the message is acknowledged only when the task ends, and given back to the broker when the worker
# process running it dies (so another worker can take it); waits for a busy target retry without limit
# (``max_retries=None``: ``retry(max_retries=None)`` would mean "the task's default, 3").
_job_task = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": None,
    "soft_time_limit": SOFT_TIME_LIMIT,
    "time_limit": HARD_TIME_LIMIT,
    "ignore_result": True,
}


def _backoff(retries: int) -> int:
    return min(300, 10 * 2**retries)


def _load_job(job_id: int) -> Job | None:
    # Stale connections are closed around each task by Celery's Django fix-up (worker processes only).
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        log.warning("job %s does not exist; nothing to do", job_id)
    return job


def _claim(task, job: Job) -> JobRun | None:
    """This worker's run of ``job``, or None when another worker claimed it first (duplicate delivery)."""
    run = JobRun(job, task_id=task.request.id or "", worker=task.request.hostname or "")
    return run if run.claim() else None


def _claim_queued(task, job_id: int) -> JobRun | None:
    """Load a queued job and claim it; None when it is gone, no longer queued, or another worker has it."""
    job = _load_job(job_id)
    if job is None or job.state != Job.State.QUEUED:
        return None
    return _claim(task, job)


def _reseal(ref: str | None, purpose: str) -> str | None:
    """Move a hand-off to a fresh reference so a retried task can still read it once."""
    if not ref:
        return None
    try:
        return handoff.put(handoff.take(ref, purpose=purpose), purpose=purpose)
    except handoff.HandoffError:
        return None


def _local_partials(target_name: str) -> list[str]:
    """Temporary names a backup may leave in a local target; safe to sweep while we hold its lock."""
    from dbs_admin.targets import get_target

    try:
        path = get_target(target_name).local_path("x.dbs")
    except Exception:
        return []
    if path is None:
        return []
    return [str(path.parent / ".*.part"), str(path.parent / "*.tmp-*")]


class WorkDirWatcher:
    """Finds the private folder ``create_backup`` writes into, so a lost job's leftovers can be removed.

    ``create_backup`` stages the sealed file in ``PRIVATE_ROOT/create-<random>/<name>.tmp-*`` and has no
    hook to tell its caller where; on the first progress reports we look for the folder holding a file
    of this job's kind and label created after the job started, and add it to the job's partial files.
    """

    def __init__(self, run: JobRun, *, kind: str, label: str, targets: list[str] | None = None) -> None:
        from dbs_admin.targets.naming import label_slug

        self.run, self.kind, self.slug = run, kind, label_slug(label)
        self.remote = _remote_targets(targets or [])
        self.before = {p.name for p in private_root().glob("create-*")}
        self.found = False

    def progress(self, stage: str, done: int, total: int | None) -> None:
        if not self.found:
            try:
                self._look()
            except Exception:  # noqa: BLE001 - never let bookkeeping break the backup itself
                log.warning("could not locate the staging folder of job %s", self.run.job.pk, exc_info=True)
        self.run.progress(stage, done, total)

    def _look(self) -> None:
        from dbs_admin.targets.naming import parse_backup_file_name

        started = self.run.job.started_at - timedelta(seconds=2)
        claimed = {p for j in Job.objects.filter(state=Job.State.RUNNING).exclude(pk=self.run.job.pk)
                   for p in j.partial_files}
        for folder in private_root().glob("create-*"):
            if folder.name in self.before or str(folder) in claimed:
                continue
            try:
                names = [f.name for f in folder.iterdir()]
            except OSError:  # another backup's folder, removed as we looked
                continue
            for name in names:
                parsed = parse_backup_file_name(name.split(".tmp-")[0])
                if parsed and parsed[1] == self.kind and parsed[2] == self.slug and parsed[0] >= started:
                    remote = [remote_entry(t, name.split(".tmp-")[0]) for t in self.remote]
                    self.run.set_partial_files([*self.run.job.partial_files, str(folder), *remote])
                    self.found = True
                    return


def _remote_targets(names: list[str]) -> list[str]:
    """The targets an interrupted upload can leave something on (those that can ``discard`` it)."""
    from dbs_admin.targets import get_target

    out = []
    for name in names:
        try:
            if hasattr(get_target(name), "discard"):
                out.append(name)
        except Exception:  # noqa: BLE001 - a misconfigured target fails the backup itself, with its message
            continue
    return out


def job_targets(job: Job) -> list[str]:
    """The targets of a backup job: its target, then the targets of its copies, each once."""
    first = job.params.get("target") or dbs_settings.DEFAULT_TARGET
    return list(dict.fromkeys([first, *(job.params.get("copies") or [])]))


def is_transport_error(exc: TargetError) -> bool:
    """A target failed because the network did (worth retrying), not because it refused or is misconfigured."""
    import paramiko

    from dbs_admin.targets.errors import StoredFileMissingError, TargetConfigError

    if isinstance(exc, (TargetConfigError, StoredFileMissingError)):
        return False
    if getattr(exc, "transient", False):
        return True
    cause = exc.__cause__
    if isinstance(cause, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    return isinstance(cause, (OSError, EOFError, paramiko.SSHException))


def _fail_message(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"Stopped: the job ran longer than {SOFT_TIME_LIMIT // 3600} hours."
    if isinstance(exc, (DbsError, SealedError, handoff.HandoffError)):
        return str(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):  # a restart, a DBA's kill, the network
        return (f"The database connection was lost during the job ({first_line(exc)}); nothing it started was "
                "kept. Run it again once the database is back.")
    if isinstance(exc, DatabaseError):
        return f"The database refused the job: {first_line(exc)}"
    return f"Internal error ({type(exc).__name__}); see the worker log."


def _run(task, run: JobRun, body, *, retry_kwargs, attempt: int = 0) -> None:
    """Run ``body()`` and record how the job ended.

    TargetError (transport) puts the job back to QUEUED and retries with
    backoff; ``retry_kwargs()`` builds the retried task's arguments (with a
    freshly sealed hand-off, since the first one was consumed).
    """
    try:
        message, fields = body()
    except CancelledError:
        run.finish(Job.State.CANCELLED, "Cancelled; partial output was removed.")
    except TargetError as exc:
        if is_transport_error(exc) and attempt < TRANSPORT_RETRIES:
            countdown = _backoff(attempt)
            run.finish(Job.State.QUEUED, f"{exc} — retrying in {countdown} s.", finished_at=None)
            kwargs = {**retry_kwargs(), "transport_attempt": attempt + 1}  # counted apart from lock waits
            Job.objects.filter(pk=run.job.pk).update(dispatch={"task": task.name, "kwargs": kwargs},
                                                     touched_at=timezone.now())
            raise task.retry(kwargs=kwargs, countdown=countdown, exc=exc) from None
        run.finish(Job.State.FAILED, str(exc))
        raise JobFailed(run.job) from exc
    except BaseException as exc:
        if not isinstance(exc, (DbsError, SealedError, handoff.HandoffError, SoftTimeLimitExceeded)):
            log.exception("job %s failed", run.job.pk)
        run.finish(Job.State.FAILED, _fail_message(exc))
        if not isinstance(exc, Exception):
            raise
        raise JobFailed(run.job) from exc  # recorded first; now Celery (Flower, Sentry, events) sees it too
    else:
        run.finish(Job.State.SUCCEEDED, message, **fields)


def _holder_lost_for(holder: Job) -> float:
    """Seconds since a running holder should have been declared lost (0 while it shows life)."""
    if holder.state != Job.State.RUNNING or holder.heartbeat_at is None:
        return 0.0
    silent = (timezone.now() - holder.heartbeat_at).total_seconds()
    return max(0.0, silent - dbs_settings.JOB_HEARTBEAT_TIMEOUT)


def _wait_or_refuse(task, job: Job, holder: Job, target: str, on_busy: str, kwargs: dict, purpose: str) -> None:
    """Skip (scheduled runs) or wait for ``holder`` to free ``target``: as long as it lives, a few seconds apart.

    Each wait is a new message a few seconds later (``task.retry``; the task allows unlimited retries, and
    transport failures are counted apart), and touches the queued job so the reaper sees it is alive. A
    holder that stopped beating is reaped here too (a site without beat frees its lock all the same); only
    if it then stays unreaped for ``LOCK_WAIT_AFTER_LOST`` does the waiting job fail, saying why.
    """
    text = f"Target {target!r} is busy with {holder.get_kind_display().lower()} job #{holder.pk}"
    lost_for = _holder_lost_for(holder)
    if lost_for > 0:
        reap_lost_jobs()
    give_up = lost_for > dbs_settings.LOCK_WAIT_AFTER_LOST
    if on_busy == "skip" or give_up:
        handoff.discard(kwargs.get("secret_ref"))
        why = ("; this run was skipped." if not give_up else
               f", whose worker stopped answering {int(lost_for + dbs_settings.JOB_HEARTBEAT_TIMEOUT)} s ago "
               f"without being freed; gave up waiting after LOCK_WAIT_AFTER_LOST "
               f"({dbs_settings.LOCK_WAIT_AFTER_LOST} s).")
        state = Job.State.CANCELLED if not give_up else Job.State.FAILED
        if Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(
            state=state, finished_at=timezone.now(), message=f"{text}{why}"
        ):
            job.refresh_from_db()
            alerts.alert_if_unattended(job)
        return
    kwargs = {**kwargs, "secret_ref": _reseal(kwargs.get("secret_ref"), purpose)}
    Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(
        message=f"Waiting for {target!r}, busy with #{holder.pk} ({holder.get_kind_display().lower()}).",
        touched_at=timezone.now(), dispatch={"task": task.name, "kwargs": kwargs},
    )
    countdown = 1 if holder.finished else LOCK_WAIT_SECONDS
    raise task.retry(kwargs=kwargs, countdown=countdown)


@shared_task(name="dbs_admin.backup", **_job_task)
def run_backup(self, job_id: int, secret_ref: str | None = None, on_busy: str = "wait",
               transport_attempt: int = 0) -> None:
    """Make the backup described by the Job's params (kind, target, label); passphrase from the hand-off."""
    from dbs_admin.backups.api import create_backup

    job = _load_job(job_id)
    if job is None or job.state != Job.State.QUEUED:
        handoff.discard(secret_ref)
        return
    if job.cancel_requested:
        handoff.discard(secret_ref)
        Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(
            state=Job.State.CANCELLED, finished_at=timezone.now(), message="Cancelled before it started."
        )
        return
    targets = job_targets(job)
    kwargs = {"job_id": job_id, "secret_ref": secret_ref, "on_busy": on_busy, "transport_attempt": transport_attempt}
    for n, target in enumerate(targets):  # one backup or prune per target at a time, copies included
        holder = locks.acquire(target, job)
        if holder is not None:
            for taken in targets[:n]:
                locks.release(taken, job)
            return _wait_or_refuse(self, job, holder, target, on_busy, kwargs, BACKUP_PURPOSE)
    run = _claim(self, job)
    if run is None:
        locks.release_all(job)
        handoff.discard(secret_ref)
        return
    run.set_partial_files([p for t in targets for p in _local_partials(t)])

    held: dict[str, str] = {}

    def body():
        passphrase = handoff.take(secret_ref, purpose=BACKUP_PURPOSE) if secret_ref else None
        if passphrase is not None:
            held["passphrase"] = passphrase  # in memory only, for a transport retry
        run.stage("starting")
        watcher = WorkDirWatcher(run, kind=job.params.get("kind", "logical"), label=job.params.get("label", ""),
                                 targets=targets)
        result = create_backup(
            kind=job.params.get("kind", "logical"),
            target=targets,
            label=job.params.get("label", ""),
            passphrase=passphrase,  # None: sealed to DBS_ADMIN["RECIPIENTS"] (the service decides and checks)
            user=job.created_by,
            progress=watcher.progress,
            cancel=run.cancel_requested,
        )
        backup_id = result.backup_id or Backup.objects.filter(name=result.name).values_list("pk", flat=True).first()
        failed = "".join(f" The copy on {t!r} FAILED: {why}" for t, why in result.failed.items())
        if result.failed:
            alerts.alert_failed_copies(job, result.name, result.failed)
        return f"{result.name} ({result.size} bytes) on {', '.join(result.targets)}.{failed}", {
            "backup_id": backup_id, "stage": "done",
        }

    def retry_kwargs() -> dict:
        p = held.get("passphrase")
        return {**kwargs, "secret_ref": handoff.put(p, purpose=BACKUP_PURPOSE) if p else None}

    _run(self, run, body, retry_kwargs=retry_kwargs, attempt=transport_attempt)
    _queue_prune_after(run.job)  # only after success (_run raised otherwise)


@shared_task(name="dbs_admin.scheduled_backup", **_job_task)
def scheduled_backup(self, target: str | None = None, kind: str = "logical", retention: dict | None = None,
                     copies: list[str] | None = None) -> None:
    """Beat's nightly backup: sealed to DBS_ADMIN["RECIPIENTS"], skipped if a target is already busy.

    ``copies`` names more targets that get a copy each. After a successful backup every target that holds a
    copy is pruned: the schedule's target with ``retention`` (from the Schedules page), the others by
    ``DBS_ADMIN["RETENTION"]``.
    """
    tick = ticks.claim(self.request, worker=this_host())
    if tick is False:
        return  # another beat's message for the same tick made the Job
    target = target or dbs_settings.DEFAULT_TARGET
    job = Job.objects.create(
        kind=Job.Kind.BACKUP,
        params={"target": target, "copies": list(copies or []), "kind": kind, "label": "scheduled",
                "scheduled": True, "retention": retention},
    )
    ticks.link(tick, job)
    send(run_backup, job, on_busy="skip")


@shared_task(name="dbs_admin.prune", **_job_task)
def run_prune(self, job_id: int, transport_attempt: int = 0) -> None:
    """Apply retention to params.target with params.retention (or the settings' policy)."""
    from dbs_admin.backups.retention import prune

    run = _claim_queued(self, job_id)
    if run is None:
        return
    job = run.job

    def body():
        run.stage("pruning")
        plan = prune(job.params["target"], policy=job.params.get("retention") or None)
        return f"Kept {len(plan.keep)}, deleted {len(plan.delete)} backup(s) on {job.params['target']!r}.", {}

    _run(self, run, body, retry_kwargs=lambda: {"job_id": job_id}, attempt=transport_attempt)


def _queue_prune_after(job: Job) -> None:
    """A scheduled backup that succeeded is followed by the retention of each target that holds a copy
    (retention is per target: the schedule's own policy for its target, the settings' for the copies)."""
    if job.state != Job.State.SUCCEEDED or not job.params.get("scheduled"):
        return
    from dbs_admin.models import BackupCopy

    first = job.params.get("target")
    stored = set(BackupCopy.objects.filter(backup_id=job.backup_id, state=BackupCopy.State.STORED)
                 .values_list("target", flat=True)) if job.backup_id else {first}
    for target in job_targets(job):
        if target not in stored:
            continue
        prune_job = Job.objects.create(kind=Job.Kind.PRUNE, params={
            "target": target, "retention": job.params.get("retention") if target == first else None})
        send(run_prune, prune_job)


@shared_task(name="dbs_admin.restore", **_job_task)
def run_restore(self, job_id: int, secret_ref: str | None = None, transport_attempt: int = 0) -> None:
    """Restore a listed backup (params.backup_name on params.target) or an upload (params.upload) into a database."""
    from dbs_admin.backups.api import restore_backup

    job = _load_job(job_id)
    if job is None or job.state != Job.State.QUEUED or job.cancel_requested:
        if job is not None and job.state == Job.State.QUEUED:
            Job.objects.filter(pk=job.pk).update(
                state=Job.State.CANCELLED, finished_at=timezone.now(), message="Cancelled before it started."
            )
        handoff.discard(secret_ref)
        return
    database = job.params.get("database", "default")
    safety_target = job.params.get("safety_backup")
    wanted = [f"database:{database}", *([safety_target] if safety_target else [])]
    for n, lock_name in enumerate(wanted):
        holder = locks.acquire(lock_name, job)
        if holder is not None:
            for taken in wanted[:n]:
                locks.release(taken, job)
            return _wait_or_refuse(
                self, job, holder, lock_name, "wait",
                {"job_id": job_id, "secret_ref": secret_ref, "transport_attempt": transport_attempt}, RESTORE_PURPOSE
            )
    run = _claim(self, job)
    if run is None:
        locks.release_all(job)
        handoff.discard(secret_ref)
        return
    upload = job.params.get("upload")
    safety_partials = _local_partials(safety_target) if safety_target else []
    run.set_partial_files([str(job_dir(job)), *([upload] if upload else []), *safety_partials])
    key = HandedKey(secret_ref, RESTORE_PURPOSE)

    def body():
        passphrase, identity = key.open()
        safety = []

        def safety_backup() -> None:
            safety.append(_safety_backup(run, safety_target, database, passphrase, identity))
            run.stage("restoring")

        run.stage("starting")
        source = Path(upload) if upload else job.params["backup_name"]
        result = restore_backup(
            source,
            target=None if upload else job.params.get("target"),
            passphrase=None if identity is not None else passphrase,
            identity=identity,
            database=database,
            reset=False,  # reset would drop the console's own tables (jobs, audit log) too
            progress=run.progress,
            cancel=run.cancel_requested,
            before_writing=safety_backup if safety_target else None,
        )
        rows = sum(result.rows.values())
        healed = f", {result.healed_blocks} damaged block(s) healed" if result.healed_blocks else ""
        origin = f" from {result.source}" if result.source.startswith("target") else ""
        return (f"Restored {rows} rows and {result.files} files{origin} into {database!r}{healed}.{''.join(safety)}",
                {"stage": "done"})

    _run(self, run, body, retry_kwargs=lambda: {"job_id": job_id, "secret_ref": key.fresh_ref()},
         attempt=transport_attempt)


def _safety_backup(run: JobRun, target: str, database: str, passphrase: str | None, identity) -> str:
    """Back up what the restore is about to replace (``backups.safety``); returns a sentence for the job's
    message. The staging folder is watched so a lost worker's leftovers are removed."""
    from dbs_admin.backups.safety import back_up_before_restore

    run.stage("backing up the current data")
    label = f"before restore {run.job.pk}"
    watcher = WorkDirWatcher(run, kind="logical", label=label)
    result = back_up_before_restore(target, database=database, passphrase=passphrase, identity=identity,
                                    label=label, user=run.job.created_by, progress=watcher.progress,
                                    cancel=run.cancel_requested)
    return f" The data it replaced is in {result.name} on {target!r} (same key)."


@shared_task(name="dbs_admin.validate", **_job_task)
def run_validate(self, job_id: int, secret_ref: str | None = None, transport_attempt: int = 0) -> None:
    """Check a listed backup (params.backup_name) or an upload (params.upload) and record what was found.

    Without a key: structure, block hashes and parity. With one (a hand-off from the restore page's "Check
    the contents" button): every chunk is decrypted and authenticated and the contents parsed, rows counted
    and every file re-hashed, which is what a restore would read. A backup that fails fails the job, and a
    listed one is marked damaged; an upload is removed afterwards.
    """
    from dbs_admin.backups.api import validate_backup

    run = _claim_queued(self, job_id)
    if run is None:
        handoff.discard(secret_ref)
        return
    job = run.job
    upload = job.params.get("upload")
    if upload:
        run.set_partial_files([upload])  # removed when the job ends, however it ends
    key = HandedKey(secret_ref, VALIDATE_PURPOSE)

    def body():
        passphrase, identity = key.open()
        backup = job.backup
        run.stage("validating" if passphrase is None else "validating with the key")  # the bar's plan
        copy = stored_copies(backup).first() if backup else None
        result = validate_backup(
            Path(upload) if upload else backup.name, target=copy.target if copy else None,
            passphrase=None if identity is not None else passphrase, identity=identity,
            decrypt=passphrase is not None, progress=run.progress,
        )
        status = (
            Backup.Status.DAMAGED if not result.ok
            else Backup.Status.HEALED if result.healed_blocks else Backup.Status.OK
        )
        if backup is not None:
            Backup.objects.filter(pk=backup.pk).update(
                status=status, verified_at=timezone.now(), healed_blocks=len(result.healed_blocks),
                healing_margin=result.healing_margin,
            )
        text = result.message or ("Intact." if status == Backup.Status.OK else Backup.Status(status).label)
        if not result.ok:
            raise BackupError(f"Damaged: {text}")
        return text, {}

    _run(self, run, body, retry_kwargs=lambda: {"job_id": job_id, "secret_ref": key.fresh_ref()},
         attempt=transport_attempt)


@shared_task(name="dbs_admin.export", **_job_task)
def run_export(self, job_id: int, secret_ref: str | None = None, transport_attempt: int = 0) -> None:
    """Export snapshot params.backup_name of repository params.target to a standalone sealed file, kept in the
    job's private folder for its download link (``jobs.exports``: removed when the link expires; a failed or
    lost job leaves nothing). The key comes from the hand-off, as a restore's."""
    from dbs_admin.backups.exports import export_for_download
    from dbs_admin.jobs import exports
    from dbs_admin.targets import get_target

    job = _load_job(job_id)
    if job is None or job.state != Job.State.QUEUED or job.cancel_requested:
        if job is not None and job.state == Job.State.QUEUED:
            Job.objects.filter(pk=job.pk).update(
                state=Job.State.CANCELLED, finished_at=timezone.now(), message="Cancelled before it started.")
        handoff.discard(secret_ref)
        return
    run = _claim(self, job)
    if run is None:
        handoff.discard(secret_ref)
        return
    folder = exports.export_dir(job)
    run.set_partial_files([str(folder)])  # removed however the job ends, unless it made the file
    key = HandedKey(secret_ref, EXPORT_PURPOSE)
    target_name, name = job.params["target"], job.params["backup_name"]
    refused: list[str] = []

    def body():
        try:
            passphrase, identity = key.open()
        except KeyRefused as exc:
            refused.append(str(exc))
            raise BackupError(str(exc)) from None
        run.stage("opening the repository")
        destination = exports.make_export_dir(job) / name
        try:
            report = export_for_download(get_target(target_name), name, destination,
                                         passphrase=None if identity is not None else passphrase, identity=identity,
                                         progress=run.progress, cancel=run.cancel_requested)
        except KeySlotError as exc:
            refused.append(str(exc))
            raise BackupError(f"The repository on target {target_name!r} refused the key ({exc}); nothing was "
                              "exported. Check it and try again.") from None
        run.set_partial_files([])  # made: kept for its link, until it expires (``exports.remove_expired``)
        minutes = max(1, int(dbs_settings.DOWNLOAD_LINK_TTL) // 60)
        params = {**job.params, "file": str(destination), "host": this_host(), "size": report.size}
        return (f"Exported {name} from target {target_name!r} ({report.size} bytes, verified); the download "
                f"below is kept for {minutes} min.", {"params": params, "stage": "done"})

    try:
        _run(self, run, body, retry_kwargs=lambda: {"job_id": job_id, "secret_ref": key.fresh_ref()},
             attempt=transport_attempt)
    except JobFailed:
        run.job.refresh_from_db()
        user = run.job.created_by
        AuditEvent.objects.create(  # the download asked for, refused or failed (as when it ran in the request)
            user=user, username=user.get_username() if user else "", action="download", backup=run.job.backup,
            object_repr=name[:300], outcome=AuditEvent.Outcome.DENIED if refused else AuditEvent.Outcome.FAILED,
            detail=f"export from target {target_name} (job #{job_id}): {run.job.message}")
        raise


@shared_task(name="dbs_admin.reap_lost_jobs", ignore_result=True)
def reap_lost_jobs_task() -> list[int]:
    """Run by beat every minute (and by the dashboard): jobs whose worker died become "failed (worker lost)",
    jobs no worker started within JOB_QUEUE_TIMEOUT become "failed"."""
    return reap_lost_jobs()


DRILL_TASK_NAME = "dbs_admin.drill"  # the name the Schedules page schedules (schedules.DRILL_TASK)


def drill_summary(report) -> str:
    if report.passed:
        from dbs_admin.drills.report import rto_words

        return f"Drill #{report.pk} of {report.backup_name} passed; restore (RTO) took {rto_words(report)}."
    failed = [c.name for c in report.checks.all() if not c.passed]
    why = ("failed checks: " + ", ".join(failed)) if failed else (report.error or "no check ran")
    return f"Drill #{report.pk} of {report.backup_name} FAILED ({why})."


def _audit_drill(job: Job, report) -> None:
    """Every drill's outcome in the audit log (the console records who queued it; beat's drills have no request)."""
    user = job.created_by
    AuditEvent.objects.create(
        user=user, username=user.get_username() if user else "beat", action="drill-result", backup=report.backup,
        object_repr=f"Drill #{report.pk} (job #{job.pk}) of {report.backup_name}"[:300],
        outcome=AuditEvent.Outcome.OK if report.passed else AuditEvent.Outcome.FAILED, detail=drill_summary(report),
    )


@shared_task(name=DRILL_TASK_NAME, **_job_task)
def run_drill_task(self, job_id: int | None = None, target: str | None = None, source: str | None = None,
                   secret_ref: str | None = None) -> None:
    """A drill of ``source`` (default: the newest backup of ``target``), with the handed key or the configured
    drill identity."""
    close_old_connections()
    if job_id is None:  # from beat: the job is created here so the console shows scheduled drills too
        tick = ticks.claim(self.request, worker=this_host())
        if tick is False:
            return  # another beat's message for the same tick made the Job
        job = Job.objects.create(kind=Job.Kind.DRILL, params={"target": target, "source": source})
        ticks.link(tick, job)
    else:
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            log.warning("drill job %s does not exist; nothing to do", job_id)
            handoff.discard(secret_ref)
            return
    run = JobRun(job, task_id=self.request.id or "", worker=self.request.hostname or "")
    if not run.claim():
        handoff.discard(secret_ref)
        return
    try:
        try:
            passphrase, identity = HandedKey(secret_ref, DRILL_PURPOSE).open()
        except (handoff.HandoffError, KeyRefused) as exc:
            run.finish(Job.State.FAILED, str(exc))
            raise JobFailed(run.job) from None
        report = run_drill(source, target=target, job=job, progress=run.progress, cancel=run.cancel_requested,
                           passphrase=None if identity is not None else passphrase, identity=identity)
    except JobFailed:
        raise
    except BaseException as exc:
        log.exception("drill job %s crashed", job.pk)
        run.finish(Job.State.FAILED, f"Internal error ({type(exc).__name__}); see the worker log.")
        if not isinstance(exc, Exception):
            raise
        raise JobFailed(run.job) from exc
    _audit_drill(job, report)
    if run.cancel_requested() and not report.passed:
        run.finish(Job.State.CANCELLED, "Cancelled; the scratch database was dropped.")
    elif report.passed:
        run.finish(Job.State.SUCCEEDED, drill_summary(report), backup=report.backup)
    else:
        run.finish(Job.State.FAILED, drill_summary(report), backup=report.backup)
        raise JobFailed(run.job)


@worker_ready.connect
def sweep_on_start(**kwargs) -> None:
    """A worker starting on a host registers it (``backups.host_disks``: which folders are its own disk) and
    removes what killed backups and restores left there (``backups.leftovers``)."""
    from dbs_admin.backups.host_disks import register_this_host

    try:
        register_this_host()
    except Exception:  # noqa: BLE001 - registration must never keep a worker from starting
        log.warning("could not register this host's folders", exc_info=True)
    finally:
        close_old_connections()
    try:
        removed = sweep_leftovers()
    except Exception:  # noqa: BLE001 - a sweep must never keep a worker from starting
        log.warning("could not sweep the leftovers of killed jobs on this host", exc_info=True)
        return
    if removed:
        log.info("removed %d folder(s) left by killed backups and restores", len(removed))


@shared_task(name="dbs_admin.history.snapshot_object", ignore_result=True, acks_late=True)
def snapshot_object(payload: dict) -> str | None:
    """Write one version from a payload the history service captured at commit (``history.signals``)."""
    from dbs_admin.history.snapshot import take_snapshot

    return take_snapshot(payload)
