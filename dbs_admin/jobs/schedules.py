"""The schedules: a few rows of django-celery-beat, written for the user (the Schedules page edits them).

Why not cron syntax: "daily at 02:30" per target, a weekly drill and a
retention policy are all most sites need. We create/update PeriodicTask and
CrontabSchedule rows (with the site's TIME_ZONE, so 02:30 means 02:30 local
time all year), and django-celery-beat's change tracking makes a running
beat pick them up without a restart. The raw PeriodicTask admin stays for
anything fancier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from dbs_admin.conf import dbs_settings

BACKUP_TASK = "dbs_admin.scheduled_backup"
DRILL_TASK = "dbs_admin.drill"  # tasks.run_drill_task
REAPER_TASK = "dbs_admin.reap_lost_jobs"
REAPER_NAME = "dbs_admin: mark jobs of dead workers lost"


def backup_task_name(target: str) -> str:
    return f"dbs_admin: daily backup of {target}"


DRILL_NAME = "dbs_admin: weekly restore drill"


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
) -> PeriodicTask:
    """The daily backup of ``target``, with a copy on each of ``copies`` (each pruned by its own retention)."""
    kwargs = {"target": target, "retention": retention, **({"copies": list(copies)} if copies else {})}
    task, _ = PeriodicTask.objects.update_or_create(
        name=backup_task_name(target),
        defaults={
            "task": BACKUP_TASK, "crontab": _crontab(at.minute, at.hour), "interval": None,
            "kwargs": json.dumps(kwargs), "enabled": enabled,
            "description": "Created by the Schedules page of the backup console.",
        },
    )
    return task


@transaction.atomic
def save_drill(*, enabled: bool, weekday: str, at: time) -> PeriodicTask:
    task, _ = PeriodicTask.objects.update_or_create(
        name=DRILL_NAME,
        defaults={"task": DRILL_TASK, "crontab": _crontab(at.minute, at.hour, weekday), "interval": None,
                  "kwargs": "{}", "enabled": enabled,
                  "description": "Created by the Schedules page of the backup console."},
    )
    return task


DEFAULT_DRILL_WEEKDAY = "0"  # Sunday, in the site's TIME_ZONE
DEFAULT_DRILL_AT = time(4, 0)


def ensure_default_schedules(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Create the weekly drill's PeriodicTask unless one exists; True when it was created."""
    if PeriodicTask.objects.using(using).filter(name=DRILL_NAME).exists():
        return False
    if using != DEFAULT_DB_ALIAS:
        return False
    save_drill(enabled=True, weekday=DEFAULT_DRILL_WEEKDAY, at=DEFAULT_DRILL_AT)
    return True


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
