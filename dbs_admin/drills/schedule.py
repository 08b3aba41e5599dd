"""The weekly drill every site gets by default (editable on the console's Schedules page).

Created after ``migrate`` (post_migrate) when it does not exist yet, and
never changed afterwards: a schedule the user edited or disabled stays as
they left it. Names come from the console's schedules module so the
Schedules page edits this very row.
"""

from __future__ import annotations

from datetime import time

from django.db import DEFAULT_DB_ALIAS

from dbs_admin.drills.scratch import PREFIX

DEFAULT_WEEKDAY = "0"  # Sunday, in the site's TIME_ZONE
DEFAULT_AT = time(4, 0)


def ensure_default_schedules(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Create the weekly drill's PeriodicTask unless one exists; True when it was created."""
    from django_celery_beat.models import PeriodicTask

    from dbs_admin.console import schedules

    if PeriodicTask.objects.using(using).filter(name=schedules.DRILL_NAME).exists():
        return False
    if using != DEFAULT_DB_ALIAS:
        return False
    schedules.save_drill(enabled=True, weekday=DEFAULT_WEEKDAY, at=DEFAULT_AT)
    return True


def on_post_migrate(sender, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """Once per migrate, after dbs_admin's own migrations; never in a drill's scratch database."""
    if getattr(sender, "label", None) != "dbs_admin" or using.startswith(PREFIX) or using != DEFAULT_DB_ALIAS:
        return
    from django.apps import apps

    if not apps.is_installed("django_celery_beat"):
        return
    ensure_default_schedules(using)
