"""Due times of schedule ticks, and claiming one tick once (the beats themselves: test_several_hosts.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from dbs_admin.jobs import ticks
from dbs_admin.models import Job, ScheduleTick

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(("spec", "now", "due"), [
    # Daily at 02:30 Paris time: fired at 02:30:00.2 or 02:31:05 by a late beat, both are the 02:30 tick.
    ({"minute": "30", "hour": "2"}, datetime(2026, 12, 7, 2, 30, 0, 200_000, PARIS), datetime(2026, 12, 7, 2, 30)),
    ({"minute": "30", "hour": "2"}, datetime(2026, 12, 7, 2, 31, 5, tzinfo=PARIS), datetime(2026, 12, 7, 2, 30)),
    # Before today's time: yesterday's tick.
    ({"minute": "30", "hour": "2"}, datetime(2026, 12, 7, 2, 29, 59, tzinfo=PARIS), datetime(2026, 12, 6, 2, 30)),
    # Weekly on Sunday (celery's 0) at 04:00, asked on a Monday.
    ({"minute": "0", "hour": "4", "day_of_week": "0"}, datetime(2026, 12, 7, 9, 0, tzinfo=PARIS),
     datetime(2026, 12, 6, 4, 0)),
    # Every minute.
    ({}, datetime(2026, 12, 7, 12, 0, 59, tzinfo=PARIS), datetime(2026, 12, 7, 12, 0)),
    # The first of the month at midnight, from mid-month.
    ({"minute": "0", "hour": "0", "day_of_month": "1"}, datetime(2026, 12, 17, 8, 0, tzinfo=PARIS),
     datetime(2026, 12, 1, 0, 0)),
])
def test_a_crontabs_due_time_is_the_latest_match_at_or_before_now(spec, now, due):
    assert ticks.crontab_due(crontab(**spec), now, PARIS) == due.replace(tzinfo=PARIS).astimezone(UTC)


def test_a_rare_crontab_finds_its_tick_years_back():
    leap_day = crontab(minute="0", hour="12", day_of_month="29", month_of_year="2")
    assert ticks.crontab_due(leap_day, datetime(2026, 12, 7, tzinfo=UTC), UTC) == datetime(2024, 2, 29, 12, 0,
                                                                                            tzinfo=UTC)


def test_an_interval_tick_is_its_window_whoever_fires_it():
    every = timedelta(seconds=4)
    a, b = datetime(2026, 12, 7, 12, 0, 1, tzinfo=UTC), datetime(2026, 12, 7, 12, 0, 3, 900_000, tzinfo=UTC)
    assert ticks.interval_due(every, a) == ticks.interval_due(every, b) == datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    assert ticks.interval_due(every, a + every) == datetime(2026, 12, 7, 12, 0, 4, tzinfo=UTC)


@pytest.mark.django_db
def test_the_first_message_of_a_tick_claims_it_and_a_duplicate_is_turned_away(caplog):
    schedule = CrontabSchedule.objects.create(minute="*", hour="*", timezone="UTC")
    task = PeriodicTask.objects.create(name="every minute", task="dbs_admin.scheduled_backup", crontab=schedule,
                                       kwargs=json.dumps({"target": "local"}))
    from_beat = SimpleNamespace(periodic_task_name=task.name)  # django-celery-beat's header, as the worker sees it
    first = ticks.claim(from_beat, worker="host-a")
    assert isinstance(first, ScheduleTick) and first.due_at.second == 0 and first.claimed_by == "host-a"
    with caplog.at_level("INFO", logger="dbs_admin.jobs"):
        assert ticks.claim(from_beat, worker="host-b") is False
    (line,) = [r for r in caplog.records if "already claimed" in r.getMessage()]
    assert line.levelname == "INFO" and task.name in line.getMessage()
    job = Job.objects.create(kind=Job.Kind.BACKUP)
    ticks.link(first, job)
    assert ScheduleTick.objects.get().job == job
    assert ticks.claim(SimpleNamespace(), worker="host-a") is None  # not from beat (a call by hand): not deduplicated
    assert ticks.claim(SimpleNamespace(headers={"periodic_task_name": "gone"}), worker="host-a") is None


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_scheduled_backup_makes_no_job_and_no_mail():
    from django.core import mail

    from dbs_admin.jobs.tasks import scheduled_backup

    schedule = CrontabSchedule.objects.create(minute="*", hour="*", timezone="UTC")
    task = PeriodicTask.objects.create(name="every minute", task="dbs_admin.scheduled_backup", crontab=schedule)
    ScheduleTick.objects.create(schedule=task.name, due_at=ticks.due_time(task.name))  # the other beat was first
    scheduled_backup.apply(kwargs={"target": "local"}, headers={"periodic_task_name": task.name})
    assert not Job.objects.exists() and mail.outbox == []
