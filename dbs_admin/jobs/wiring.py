"""What the jobs layer sets up when Django starts (``DbsAdminConfig.ready``).

- After ``migrate``: beat runs the lost-job reaper every minute (a site whose
  dashboard nobody opens still needs dead workers' jobs marked lost and their
  partial files removed), and the weekly drill exists by default.
- The history service's snapshots reach a worker through the hook registered
  here (``history.signals.set_snapshot_sender``): the service captures at
  commit and never imports Celery; without the hook it writes inline.
- The recoverability system check (``drills.system_checks``) is registered.

Celery itself is imported only when a snapshot is first sent or the worker
loads ``tasks.py``: a management command that never queues work pays nothing.
"""

from __future__ import annotations

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate

from dbs_admin.drills import system_checks  # noqa: F401  (registers the check on import)
from dbs_admin.drills.scratch import PREFIX
from dbs_admin.history.signals import set_snapshot_sender


def _after_migrate(sender, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """Once per migrate, after dbs_admin's own migrations; never in a drill's scratch database."""
    if getattr(sender, "label", None) != "dbs_admin" or using != DEFAULT_DB_ALIAS or using.startswith(PREFIX):
        return
    if not apps.is_installed("django_celery_beat"):
        return
    from dbs_admin.jobs import schedules  # imports django-celery-beat's models: only once apps are ready

    schedules.ensure_reaper()
    schedules.ensure_default_schedules(using)


def _send_snapshot(payload: dict) -> None:
    from dbs_admin.jobs.tasks import snapshot_object

    # argsrepr: Celery would otherwise build a repr of the whole object for the message headers.
    snapshot_object.apply_async(args=[payload], retry=False, argsrepr=f"[{payload['model']} {payload['pk']}]",
                                kwargsrepr="{}")


def connect() -> None:
    """Idempotent (dispatch uids): safe when ``ready()`` runs twice in tests."""
    post_migrate.connect(_after_migrate, dispatch_uid="dbs_admin.jobs.after_migrate")
    set_snapshot_sender(_send_snapshot)
