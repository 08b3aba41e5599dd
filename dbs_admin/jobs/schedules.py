"""The schedules: a few rows of django-celery-beat, written for the user (the Schedules page edits them).

Why not cron syntax: "daily at 02:30" per target, a weekly drill and a
retention policy are all most sites need. We create/update PeriodicTask and
CrontabSchedule rows (with the site's TIME_ZONE, so 02:30 means 02:30 local
time all year), and django-celery-beat's change tracking makes a running
beat pick them up without a restart. The raw PeriodicTask admin stays for
anything fancier.

``migrate`` creates the daily backup of the default target and the weekly
drill, each *disabled* until it can run (the backup needs ``RECIPIENTS``,
the drill also a ``DRILL_IDENTITY``), marked as waiting; the next
``migrate``, or a visit to the dashboard or the Schedules page, turns a
waiting schedule on once its keys are configured. A schedule the user
switched off stays off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from dbs_admin.backups.sealing_keys import can_seal_without_passphrase
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.identity import drill_identity_configured

BACKUP_TASK = "dbs_admin.scheduled_backup"
DRILL_TASK = "dbs_admin.drill"  # tasks.run_drill_task
REAPER_TASK = "dbs_admin.reap_lost_jobs"
REAPER_NAME = "dbs_admin: mark jobs of dead workers lost"


def backup_task_name(target: str) -> str:
    return f"dbs_admin: daily backup of {target}"


DRILL_NAME = "dbs_admin: weekly restore drill"
BY_PAGE = "Created by the Schedules page of the backup console."
BY_MIGRATE = "Created by migrate (dbs_admin)."
WAITING = "Created by migrate (dbs_admin), off until its keys are configured; it turns on by itself then."


def backup_can_run() -> bool:
    """Scheduled backups are sealed to RECIPIENTS: no passphrase is stored anywhere."""
    return can_seal_without_passphrase()


def drill_can_run() -> bool:
    """The weekly drill opens the scheduled backups with DRILL_IDENTITY (its passphrase: the worker's environment)."""
    return backup_can_run() and drill_identity_configured()


# Field errors of the Schedules form. The keys that are missing are named once, in the page's note above the
# form (``drills.health.setup_sentence``); repeating them on each checkbox said the same thing three times.
BACKUP_BLOCKED = "Cannot be switched on yet: scheduled backups need the recipient key the note above names."
DRILL_BLOCKED = "Cannot be switched on yet: the drill needs the keys the note above names."


def _crontab(minute: int, hour: int, day_of_week: str = "*") -> CrontabSchedule:
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=str(minute), hour=str(hour), day_of_week=day_of_week, day_of_month="*", month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    return schedule


def retention_for(target: str) -> dict:
    policy = dbs_settings.RETENTION
    return dict(policy.get(target) or policy.get("*") or {})


def _time_of(task: PeriodicTask | None, default: time) -> time:
    if task is None or task.crontab is None:
        return default
    try:
        return time(int(task.crontab.hour), int(task.crontab.minute))
    except ValueError:
        return default


def target_initial(target: str) -> dict:
    task = PeriodicTask.objects.filter(name=backup_task_name(target)).select_related("crontab").first()
    kwargs = json.loads(task.kwargs or "{}") if task else {}
    keep = kwargs.get("retention") or retention_for(target)
    return {
        "enabled": bool(task and task.enabled),
        "at": _time_of(task, time(2, 0)),
        "copies": list(kwargs.get("copies") or []),
        "keep_last": keep.get("last", 7), "keep_daily": keep.get("daily", 7),
        "keep_weekly": keep.get("weekly", 4), "keep_monthly": keep.get("monthly", 12),
    }


def drill_initial() -> dict:
    task = PeriodicTask.objects.filter(name=DRILL_NAME).select_related("crontab").first()
    weekday = task.crontab.day_of_week if task and task.crontab else "0"
    return {"enabled": bool(task and task.enabled), "weekday": weekday, "at": _time_of(task, time(4, 0))}


@transaction.atomic
def save_target(
    target: str, *, enabled: bool, at: time, retention: dict, copies: list[str] | None = None,
    description: str = BY_PAGE,
) -> PeriodicTask:
    """The daily backup of ``target``, with a copy on each of ``copies`` (each pruned by its own retention)."""
    kwargs = {"target": target, "retention": retention, **({"copies": list(copies)} if copies else {})}
    task, _ = PeriodicTask.objects.update_or_create(
        name=backup_task_name(target),
        defaults={
            "task": BACKUP_TASK, "crontab": _crontab(at.minute, at.hour), "interval": None,
            "kwargs": json.dumps(kwargs), "enabled": enabled,
            "description": description,
        },
    )
    return task


@transaction.atomic
def save_drill(*, enabled: bool, weekday: str, at: time, description: str = BY_PAGE) -> PeriodicTask:
    task, _ = PeriodicTask.objects.update_or_create(
        name=DRILL_NAME,
        defaults={"task": DRILL_TASK, "crontab": _crontab(at.minute, at.hour, weekday), "interval": None,
                  "kwargs": "{}", "enabled": enabled, "description": description},
    )
    return task


DEFAULT_DRILL_WEEKDAY = "0"  # Sunday, in the site's TIME_ZONE
DEFAULT_DRILL_AT = time(4, 0)
DEFAULT_BACKUP_AT = time(2, 0)


def _state(can_run: bool) -> dict:
    return {"enabled": can_run, "description": BY_MIGRATE if can_run else WAITING}


def ensure_default_schedules(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Create the daily backup of the default target and the weekly drill unless they exist; True when one was.

    Each is created enabled only if it can run now; otherwise disabled and
    waiting (:func:`enable_ready_schedules` turns it on later).
    """
    if using != DEFAULT_DB_ALIAS:
        return False
    created = False
    target = dbs_settings.DEFAULT_TARGET
    if target in dbs_settings.TARGETS and not PeriodicTask.objects.filter(name=backup_task_name(target)).exists():
        save_target(target, at=DEFAULT_BACKUP_AT, retention=retention_for(target), **_state(backup_can_run()))
        created = True
    if not PeriodicTask.objects.filter(name=DRILL_NAME).exists():
        save_drill(weekday=DEFAULT_DRILL_WEEKDAY, at=DEFAULT_DRILL_AT, **_state(drill_can_run()))
        created = True
    enable_ready_schedules()
    return created


def enable_ready_schedules() -> list[str]:
    """Turn on the waiting default schedules that can run now; returns their names."""
    waiting = PeriodicTask.objects.filter(description=WAITING, enabled=False)
    ready = [t for t in waiting.only("pk", "name", "task")
             if (t.task == BACKUP_TASK and backup_can_run()) or (t.task == DRILL_TASK and drill_can_run())]
    for task in ready:  # save(): django-celery-beat's change tracking tells a running beat
        task.enabled, task.description = True, BY_MIGRATE
        task.save(update_fields=["enabled", "description"])
    return [t.name for t in ready]


def ensure_reaper() -> None:
    """Beat runs the lost-job reaper every minute; created on first use of the console."""
    if PeriodicTask.objects.filter(name=REAPER_NAME).exists():
        return
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.get_or_create(name=REAPER_NAME, defaults={"task": REAPER_TASK, "interval": every})


@dataclass(frozen=True)
class NextRun:
    name: str
    task: str
    at: datetime


def next_runs(limit: int = 6) -> list[NextRun]:
    """Upcoming backup and drill runs, soonest first (the reaper is left out: it runs every minute)."""
    now = timezone.now()
    runs = []
    tasks = PeriodicTask.objects.filter(enabled=True, task__startswith="dbs_admin.").exclude(task=REAPER_TASK)
    for task in tasks.select_related("crontab", "interval"):
        try:
            schedule = task.schedule
            last = task.last_run_at or now
            remaining = schedule.remaining_estimate(last)
        except Exception:  # a hand-edited row beat cannot use either; skip it here
            continue
        at = timezone.now() + max(remaining, timedelta(0))
        runs.append(NextRun(task.name, task.task, (at + timedelta(microseconds=500_000)).replace(microsecond=0)))
    return sorted(runs, key=lambda r: r.at)[:limit]
