"""One backup per target at a time, across workers, hosts and duplicated beats.

The lock is a row whose primary key is the target name: inserting it is
atomic on every database Django supports, so two workers racing for the same
target cannot both win, whatever the broker (Redis or the filesystem
transport of the demo). A lock is tied to its Job; when that job finishes
the lock goes with it, and when the worker dies the reaper releases it after
cleaning up (see ``jobs.reap_lost_jobs``). No lock server of our own.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from dbs_admin.models import Job, TargetLock


def acquire(target: str, job: Job) -> Job | None:
    """Take ``target`` for ``job``; None on success, else the job that holds it.

    A lock left by a job that already ended (finished, lost) is stale and is
    taken over.
    """
    for _ in range(2):
        try:
            with transaction.atomic():
                TargetLock.objects.create(target=target, job=job)
            return None
        except IntegrityError:
            lock = TargetLock.objects.select_related("job").filter(target=target).first()
            if lock is None:
                continue  # released in between: try again
            if lock.job_id == job.pk:
                return None
            if lock.job is None or lock.job.finished:
                TargetLock.objects.filter(target=target, job_id=lock.job_id).delete()
                continue
            return lock.job
    lock = TargetLock.objects.select_related("job").filter(target=target).first()
    return lock.job if lock else None


def release(target: str, job: Job) -> None:
    TargetLock.objects.filter(target=target, job=job).delete()


def release_all(job: Job) -> None:
    TargetLock.objects.filter(job=job).delete()
