"""A task only the worker-lost test loads (``celery worker -I tests.console.worker_tasks``).

It runs a Job through the same :class:`JobRun` as the real tasks, leaves a
partial file, and then works slowly without reporting progress, so only the
heartbeat thread keeps the job alive: exactly what SIGKILL must interrupt.
"""

import time
from pathlib import Path

from demo_site.celery import app


@app.task(name="tests.console.slow_job", acks_late=True)
def slow_job(job_id: int, partial: str, seconds: float = 60.0) -> None:
    from dbs_admin.jobs.job_run import JobRun
    from dbs_admin.models import Job

    run = JobRun(Job.objects.get(pk=job_id), worker="slow-job-worker")
    if not run.claim():
        return
    run.set_partial_files([partial])
    Path(partial).parent.mkdir(parents=True, exist_ok=True)
    Path(partial).write_bytes(b"half a backup")
    run.stage("working")
    time.sleep(seconds)
    run.finish(Job.State.SUCCEEDED, "slow job done")
