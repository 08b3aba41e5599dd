"""The Schedules form writes django-celery-beat rows in the site's TIME_ZONE; beat computes runs from them."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils.html import escape
from django_celery_beat.models import PeriodicTask

from dbs_admin.jobs import schedules

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(settings):
    """What `dbs_keys init` prints: a recipient seals scheduled backups, the drill identity opens them."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": ["dbs1-some-recipient"],
                          "DRILL_IDENTITY": "/srv/keys/drill.identity"}


def form_data(**over):
    data = {
        "t-local-enabled": "on", "t-local-at": "02:30", "t-local-keep_last": "5", "t-local-keep_daily": "7",
        "t-local-keep_weekly": "4", "t-local-keep_monthly": "6",
        "drill-enabled": "on", "drill-weekday": "0", "drill-at": "04:15",
    }
    data.update(over)
    return data


def test_saving_creates_crontabs_in_the_site_time_zone(su_client, settings, keys):
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


def test_saving_again_updates_instead_of_duplicating(su_client, keys):
    su_client.post(reverse("dbs_admin:schedules"), form_data())
    su_client.post(reverse("dbs_admin:schedules"), form_data(**{"t-local-at": "03:45", "t-local-enabled": ""}))
    (task,) = PeriodicTask.objects.filter(task="dbs_admin.scheduled_backup")
    assert (task.crontab.hour, task.crontab.minute, task.enabled) == ("3", "45", False)
    page = su_client.get(reverse("dbs_admin:schedules")).content.decode()
    assert 'value="03:45"' in page


def test_page_says_in_one_sentence_what_is_missing_and_refuses_what_cannot_run(su_client, settings):
    page = su_client.get(reverse("dbs_admin:schedules")).content.decode()
    assert page.count('id="dbs-setup-missing"') == 1 and "dbs_keys init" in page
    response = su_client.post(reverse("dbs_admin:schedules"), form_data())
    page = response.content.decode()
    assert response.status_code == 400
    assert escape(schedules.BACKUP_BLOCKED) in page and escape(schedules.DRILL_BLOCKED) in page
    assert page.count("RECIPIENTS") == 1  # what is missing is said once, in the note above the form
    assert not PeriodicTask.objects.filter(task=schedules.BACKUP_TASK, enabled=True).exists()
    # off, the times and retention can still be saved
    response = su_client.post(reverse("dbs_admin:schedules"), form_data(**{"t-local-enabled": "", "drill-enabled": ""}))
    assert response.status_code == 302
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": ["dbs1-some-recipient"]}
    page = su_client.get(reverse("dbs_admin:schedules")).content.decode()
    assert "DRILL_IDENTITY" in page and "The daily backup is off" not in page
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DRILL_IDENTITY": "/srv/keys/drill.identity"}
    assert b"dbs-setup-missing" not in su_client.get(reverse("dbs_admin:schedules")).content
    response = su_client.post(reverse("dbs_admin:schedules"), form_data(), follow=True)
    assert response.content.decode().count("RECIPIENTS") == 0  # no warning after saving, and never twice


def test_every_invalid_field_says_why_and_nothing_is_saved(su_client, keys):
    before = list(PeriodicTask.objects.values_list("name", "enabled", "kwargs"))
    response = su_client.post(reverse("dbs_admin:schedules"),
                              form_data(**{"t-local-at": "25:99", "t-local-keep_last": "-3", "drill-at": ""}))
    page = response.content.decode()
    assert response.status_code == 400 and 'id="dbs-schedule-errors"' in page
    assert "Enter a valid time." in page and "greater than or equal to 1" in page and "This field is required." in page
    assert list(PeriodicTask.objects.values_list("name", "enabled", "kwargs")) == before


def test_migrate_schedules_the_lost_job_reaper_every_minute():
    """Created after migrate (post_migrate), so it runs even if nobody opens the dashboard."""
    task = PeriodicTask.objects.get(name=schedules.REAPER_NAME)
    assert task.task == "dbs_admin.reap_lost_jobs" and task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")
