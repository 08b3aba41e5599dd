"""Queueing work: the console's one door into the jobs layer.

Each function creates the Job row, seals what opens or makes the backup
(``handoff``) and sends the task with only the hand-off's reference, so a
view never touches a Celery task or a secret's storage, and a secret never
reaches the broker. Auditing stays with the views (it needs the request).
"""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables

from dbs_admin.jobs import handoff
from dbs_admin.jobs.job_run import send as send_task
from dbs_admin.models import Backup, Job

BROKER_DOWN = ("The task queue (Celery's broker) cannot be reached, so nothing was queued: {error}. Check that the "
               "broker (Redis) is running and that the workers use it (`manage.py dbs_status`), then try again.")


class QueueUnavailable(Exception):
    """The broker refused or could not be reached; the Job and its sealed key were removed again."""


def send(task, job: Job, **kwargs) -> None:
    """Send ``task`` (a task, or the name of one in ``jobs.tasks``) for ``job``; when the broker is down, undo
    the Job and its hand-off and say so in one line.

    The tasks module is imported here, on first use, not at start-up: it pulls in every service (capture,
    restore, drills, the sealed writer with numpy), which the admin's autodiscovery would otherwise import
    into every process that sets Django up, ``manage.py --help`` included.
    """
    if isinstance(task, str):
        from dbs_admin.jobs import tasks

        task = getattr(tasks, task)
    try:
        send_task(task, job, **kwargs)
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several kinds for "no broker"
        handoff.discard(kwargs.get("secret_ref"))
        Job.objects.filter(pk=job.pk).delete()
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise QueueUnavailable(BROKER_DOWN.format(error=reason)) from exc


@sensitive_variables("passphrase")
def queue_backup(*, user: Any, kind: str, target: str, label: str, passphrase: str | None,
                 copies: list[str] | None = None) -> Job:
    """A backup job to ``target`` and a copy on each of ``copies``; ``passphrase`` None seals to the configured
    recipients (the service decides and checks)."""
    job = Job.objects.create(kind=Job.Kind.BACKUP, created_by=user,
                             params={"kind": kind, "target": target, "copies": list(copies or []), "label": label,
                                     "key": "passphrase" if passphrase else "recipients"})
    ref = handoff.put(passphrase, purpose=handoff.BACKUP_PURPOSE) if passphrase else None
    send("run_backup", job, secret_ref=ref)
    return job


@sensitive_variables("passphrase", "identity_file")
def seal_restore_key(*, passphrase: str, identity_file: str | None, ttl) -> str:
    """Seal the key of a restore at step 1 (it is queued at step 2, within ``ttl``); returns the reference."""
    return handoff.put_key(passphrase=passphrase, identity_file=identity_file, purpose=handoff.RESTORE_PURPOSE,
                           ttl=ttl)


def queue_restore(*, user: Any, backup: Backup | None, params: dict, key_ref: str) -> Job:
    """A restore job whose key was sealed by :func:`seal_restore_key`."""
    job = Job.objects.create(kind=Job.Kind.RESTORE, created_by=user, params=params, backup=backup)
    send("run_restore", job, secret_ref=key_ref)
    return job


@sensitive_variables("passphrase", "identity_file")
def queue_validate(*, user: Any, backup: Backup | None, params: dict | None = None, passphrase: str | None = None,
                   identity_file: str | None = None) -> Job:
    """A validation job: structure, hashes and parity; with a key, every chunk decrypted and the contents read."""
    params = dict(params or {"backup_name": backup.name if backup else None})
    ref = None
    if passphrase is not None:
        ref = handoff.put_key(passphrase=passphrase, identity_file=identity_file, purpose=handoff.VALIDATE_PURPOSE)
    job = Job.objects.create(kind=Job.Kind.VALIDATE, created_by=user, backup=backup, params=params)
    send("run_validate", job, secret_ref=ref)
    return job


@sensitive_variables("passphrase", "identity_file")
def queue_drill(*, target: str | None = None, user: Any = None, passphrase: str | None = None,
                identity_file: str | None = None) -> Job:
    """A drill job of the newest backup on ``target`` (beat calls the task directly, without a Job).

    Without a key the worker uses the configured drill identity; with one (the Run drill form, when no
    identity is configured) the key is sealed for the worker exactly as for a restore.
    """
    ref = None
    if passphrase is not None:
        ref = handoff.put_key(passphrase=passphrase, identity_file=identity_file, purpose=handoff.DRILL_PURPOSE)
    job = Job.objects.create(kind=Job.Kind.DRILL, created_by=user,
                             params={"target": target, **({"key": "handed"} if ref else {})})
    send("run_drill_task", job, target=target, secret_ref=ref)
    return job


@sensitive_variables("passphrase", "identity_file")
def queue_export(*, user: Any, backup: Backup, target: str, passphrase: str, identity_file: str | None = None) -> Job:
    """An export job of snapshot ``backup`` on repository ``target`` to a standalone file for download (its
    job page links to the file once made); the key is sealed for the worker as for a restore."""
    ref = handoff.put_key(passphrase=passphrase, identity_file=identity_file, purpose=handoff.EXPORT_PURPOSE)
    job = Job.objects.create(kind=Job.Kind.EXPORT, created_by=user, backup=backup,
                             params={"target": target, "backup_name": backup.name})
    send("run_export", job, secret_ref=ref)
    return job
