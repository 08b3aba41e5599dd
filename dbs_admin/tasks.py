"""The entry point Celery's ``autodiscover_tasks()`` looks for (``<app>.tasks``).

The tasks live in :mod:`dbs_admin.jobs.tasks`, the only layer that imports
Celery; importing them here registers them with the worker's app.
"""

from dbs_admin.jobs import tasks  # noqa: F401  (registers every dbs_admin task)
