"""After ``migrate``: make sure beat runs the lost-job reaper every minute.

Why here and not only on the dashboard: a site whose dashboard nobody opens
still needs dead workers' jobs marked lost and their partial files removed.
Imported by ``dbs_admin.admin`` (loaded by the admin's autodiscovery in every
process that sets Django up, ``migrate`` included).
"""

from __future__ import annotations

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


def _ensure_reaper(sender, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    if getattr(sender, "label", None) != "dbs_admin" or using != DEFAULT_DB_ALIAS:
        return
    if not apps.is_installed("django_celery_beat"):
        return
    from dbs_admin.console.schedules import ensure_reaper

    ensure_reaper()


post_migrate.connect(_ensure_reaper, dispatch_uid="dbs_admin.console.ensure_reaper")
