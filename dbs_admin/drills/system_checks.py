"""A Django system check that warns when the site is not recoverable (see :mod:`.health`).

It shows in ``runserver``, ``manage.py check`` and deploy scripts that run
checks. It reads the database, so it says nothing when the database is not
reachable or not migrated yet (a fresh checkout must still be able to run
``migrate``) instead of failing the command.
"""

from __future__ import annotations

from django.core.checks import Warning, register
from django.db import DatabaseError

from dbs_admin.drills.health import health_status

TAG = "dbs_admin"
IDS = {"backup_missing": "dbs_admin.W001", "backup_too_old": "dbs_admin.W001", "drill_failed": "dbs_admin.W002"}


@register(TAG)
def recoverability_check(app_configs=None, **kwargs) -> list[Warning]:
    try:
        health = health_status()
    except (DatabaseError, RuntimeError):  # not migrated, unreachable, or DB access blocked (tests)
        return []
    return [
        Warning(problem, hint="See the Backups dashboard or run `manage.py dbs_status`.", id=IDS[code])
        for code, problem in zip(health.codes, health.problems)
    ]
