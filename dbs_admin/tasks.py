"""Celery tasks of dbs_admin.

Celery's autodiscovery imports ``<app>.tasks``; each concern keeps its tasks
beside its services and is imported here. Tasks stay thin: they call the same
service functions as the management commands.
"""
from dbs_admin.console.tasks import (
    reap_lost_jobs_task,
    run_backup,
    run_prune,
    run_restore,
    run_validate,
    scheduled_backup,
)  # noqa: E402,F401,E501
from dbs_admin.drills.tasks import run_drill_task  # noqa: E402,F401
from dbs_admin.history.tasks import snapshot_object  # noqa: E402,F401
