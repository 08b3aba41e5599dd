"""The Schedules form writes django-celery-beat rows in the site's TIME_ZONE; beat computes runs from them."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from dbs_admin.jobs import schedules

pytestmark = pytest.mark.django_db


def form_data(**over):
    data = {
        "t-local-enabled": "on", "t-local-at": "02:30", "t-local-keep_last": "5", "t-local-keep_daily": "7",
        "t-local-keep_weekly": "4", "t-local-keep_monthly": "6",
        "drill-enabled": "on", "drill-weekday": "0", "drill-at": "04:15",
    }
    data.update(over)
    return data


def test_saving_creates_crontabs_in_the_site_time_zone(su_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    response = su_client.post(reverse("dbs_admin:schedules"), form_data())
    assert response.status_code == 302
    backup = PeriodicTask.objects.get(name=schedules.backup_task_name("local"))
    assert backup.task == "dbs_admin.scheduled_backup" and backup.enabled
    assert (backup.crontab.hour, backup.crontab.minute, str(backup.crontab.timezone)) == ("2", "30", "Europe/Berlin")
    assert json.loads(backup.kwargs) == {
        "target": "local", "retention": {"last": 5, "daily": 7, "weekly": 4, "monthly": 6},
    }
    drill = PeriodicTask.objects.get(name=schedules.DRILL_NAME)
    assert (drill.crontab.day_of_week, drill.crontab.hour, drill.crontab.minute) == ("0", "4", "15")
    assert PeriodicTask.objects.filter(task="dbs_admin.reap_lost_jobs", interval__every=1).exists()
    # 02:30 Berlin time is 00:30 or 01:30 UTC depending on DST: the next run is at 02:30 local.
    (run,) = [r for r in schedules.next_runs() if r.task == "dbs_admin.scheduled_backup"]
    local = run.at.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 30)
    assert run.at > datetime.now(ZoneInfo("UTC"))


def test_saving_again_updates_instead_of_duplicating(su_client):
    su_client.post(reverse("dbs_admin:schedules"), form_data())
    su_client.post(reverse("dbs_admin:schedules"), form_data(**{"t-local-at": "03:45", "t-local-enabled": ""}))
    (task,) = PeriodicTask.objects.filter(task="dbs_admin.scheduled_backup")
    assert (task.crontab.hour, task.crontab.minute, task.enabled) == ("3", "45", False)
    page = su_client.get(reverse("dbs_admin:schedules")).content.decode()
    assert 'value="03:45"' in page


def test_page_warns_when_scheduled_backups_have_no_recipient(su_client, settings):
    assert b"dbs-no-recipients" in su_client.get(reverse("dbs_admin:schedules")).content
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": ["dbs1-some-recipient"]}
    assert b"dbs-no-recipients" not in su_client.get(reverse("dbs_admin:schedules")).content


def test_invalid_time_is_refused(su_client):
    response = su_client.post(reverse("dbs_admin:schedules"), form_data(**{"t-local-at": "25:99"}))
    assert response.status_code == 400
    assert not PeriodicTask.objects.filter(task="dbs_admin.scheduled_backup").exists()


def test_migrate_schedules_the_lost_job_reaper_every_minute():
    """Created after migrate (post_migrate), so it runs even if nobody opens the dashboard."""
    task = PeriodicTask.objects.get(name=schedules.REAPER_NAME)
    assert task.task == "dbs_admin.reap_lost_jobs" and task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")
