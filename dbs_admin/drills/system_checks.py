"""A Django system check that warns when the site is not recoverable, or not set up yet (see :mod:`.health`).

It shows in ``runserver``, ``manage.py check`` and deploy scripts that run
checks. It reads the database, so it says nothing when the database is not
reachable or not migrated yet (a fresh checkout must still be able to run
``migrate``) instead of failing the command.

Once per process at most: the warnings are for the person starting a
command, and ``runserver`` or a test run would otherwise repeat them on
every check. The ``dbs_*`` commands run no system checks at all
(``management/cli.py`` says why): ``dbs_backup`` is the fix for W001,
``dbs_status`` says the same things itself.

- W001: the newest verified backup is older than the RPO, or backups are failing.
- W002: the last restore drill failed.
- W003: unattended operation is not set up yet (no backup, no recipients, no drill identity).
"""

from __future__ import annotations

from django.core.checks import Warning, register
from django.db import DatabaseError

TAG = "dbs_admin"
IDS = {"backup_too_old": "dbs_admin.W001", "backup_failing": "dbs_admin.W001", "drill_failed": "dbs_admin.W002"}
NOT_CONFIGURED = "dbs_admin.W003"
HINT = "See the Backups dashboard or run `manage.py dbs_status`."

_reported = False


def reset() -> None:
    """Let the next check report again (tests; a long-lived process that wants a fresh reading)."""
    global _reported
    _reported = False


@register(TAG)
def recoverability_check(app_configs=None, **kwargs) -> list[Warning]:
    global _reported
    if _reported:
        return []
    # imported when a check runs, not when it is registered at start-up: health reads the key settings, which
    # brings in the key code (cryptography, argon2) that most commands never use
    from dbs_admin.drills.health import SETUP_LINE, health_status

    try:
        health = health_status()
    except (DatabaseError, RuntimeError):  # not migrated, unreachable, or DB access blocked (tests)
        return []
    _reported = True
    found = [Warning(problem, hint=HINT, id=IDS[code]) for code, problem in zip(health.codes, health.problems)]
    if health.warnings:
        found.append(Warning("Not set up yet: " + " ".join(health.warnings), hint=SETUP_LINE, id=NOT_CONFIGURED))
    return found


PER_HOST = "dbs_admin.W004"
PER_HOST_HINT = "See README, \"Several hosts\"."


@register(TAG)
def per_host_disks_check(app_configs=None, **kwargs) -> list[Warning]:
    """W004: workers on several hosts write one per-host folder (a local target, HISTORY_ROOT) to their own disks."""
    from dbs_admin.backups.host_disks import per_host_warnings

    try:
        return [Warning(text, hint=PER_HOST_HINT, id=PER_HOST) for text in per_host_warnings()]
    except (DatabaseError, RuntimeError):  # not migrated, unreachable, or DB access blocked (tests)
        return []
