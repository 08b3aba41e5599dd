"""Exactly once per schedule tick, however many beats fire it.

Why: production often runs two beat processes by accident (a deploy that
starts a second one), and each sends every due task. A per-target lock only
stops two runs overlapping; two backups a second apart both run. So a
scheduled task first claims its tick: the schedule's name (the
``periodic_task_name`` header django-celery-beat puts on every message it
sends) and the tick's *due time*, computed from the schedule itself rather
than from either beat's clock, as a unique row (:class:`ScheduleTick`). The
first insert wins; a duplicate creates no Job, sends no mail and logs one
INFO line.

Due times: for a crontab, the latest time at or before now that the crontab
matches, in the crontab's time zone, so two beats firing the 02:00 tick at
02:00:00.2 and 02:00:03 claim the same row. For an interval, the start of the
interval-long window (counted from the Unix epoch) that now falls in; each
beat fires once per interval, so every window is claimed once. A message
without the header (a task called by hand, the console's *Back up now*) is
not deduplicated.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.utils import timezone

from dbs_admin.models import ScheduleTick

log = logging.getLogger("dbs_admin.jobs")

HEADER = "periodic_task_name"
_SEARCH_DAYS = 5 * 366  # a crontab that matches nothing in five years (Feb 30th) has no due time


def schedule_name(request) -> str | None:
    """The PeriodicTask that sent this message, from django-celery-beat's header; None when not from beat."""
    name = getattr(request, HEADER, None)
    if not name:
        headers = getattr(request, "headers", None) or {}
        name = headers.get(HEADER) if isinstance(headers, dict) else None
    return name or None


def crontab_due(crontab, now: datetime, tz) -> datetime | None:
    """The latest minute at or before ``now`` that ``crontab`` (a celery crontab: sets of ints) matches."""
    local = now.astimezone(tz).replace(second=0, microsecond=0)
    hours, minutes = sorted(crontab.hour, reverse=True), sorted(crontab.minute, reverse=True)
    day: date = local.date()
    for _ in range(_SEARCH_DAYS):
        if (day.month in crontab.month_of_year and day.day in crontab.day_of_month
                and day.isoweekday() % 7 in crontab.day_of_week):  # celery counts Sunday as 0
            limit = (local.hour, local.minute) if day == local.date() else (23, 59)
            for h in hours:
                for m in minutes:
                    if (h, m) <= limit:
                        return datetime.combine(day, dtime(h, m), tzinfo=tz).astimezone(UTC)
        day -= timedelta(days=1)
    return None


def interval_due(every: timedelta, now: datetime) -> datetime:
    seconds = max(1, int(every.total_seconds()))
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def due_time(name: str, now: datetime | None = None) -> datetime | None:
    """The due time of the tick of PeriodicTask ``name`` that fires now; None if it has no such schedule."""
    from django_celery_beat.models import PeriodicTask

    now = now or timezone.now()
    task = PeriodicTask.objects.filter(name=name).select_related("crontab", "interval", "clocked").first()
    if task is None:
        return None
    if task.crontab is not None:
        tz = task.crontab.timezone
        tz = ZoneInfo(str(tz)) if not hasattr(tz, "utcoffset") else tz
        return crontab_due(task.crontab.schedule, now, tz)
    if task.interval is not None:
        return interval_due(task.interval.schedule.run_every, now)
    if task.clocked is not None:
        return task.clocked.clocked_time
    return now.replace(second=0, microsecond=0)  # solar and others: minute precision


def claim(request, *, worker: str = "") -> ScheduleTick | None | bool:
    """Claim the tick this beat message fires.

    Returns the new :class:`ScheduleTick` (go on, and link the Job to it), ``False`` when another
    message claimed it first (stop: a duplicate), or ``None`` when the message did not come from a
    schedule (go on: nothing to deduplicate).
    """
    name = schedule_name(request)
    if name is None:
        return None
    due = due_time(name)
    if due is None:
        return None
    try:
        with transaction.atomic():
            return ScheduleTick.objects.create(schedule=name[:200], due_at=due, claimed_by=worker[:255])
    except IntegrityError:
        log.info("schedule %r: the tick due %s was already claimed; this duplicate does nothing",
                 name, due.isoformat())
        return False


def link(tick: ScheduleTick | None, job) -> None:
    if tick:
        ScheduleTick.objects.filter(pk=tick.pk).update(job=job)
