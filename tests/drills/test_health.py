"""Health: the system check, ``dbs_status`` exit codes, the JSON status view's access rules, the default schedule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import checks
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from dbs_admin.drills.report import finish_report, record_check, start_report
from dbs_admin.drills.system_checks import recoverability_check
from dbs_admin.models import Backup

TOKEN = "s3cret-monitoring-token-0123456789"


def verified_backup(age: timedelta) -> Backup:
    return Backup.objects.create(name=f"b-{age.total_seconds()}.dbs", status=Backup.Status.OK,
                                 created_at=timezone.now() - age, verified_at=timezone.now())


def drill(passed: bool):
    report = start_report(backup_name="b.dbs", engine="sqlite")
    record_check(report, "row counts", passed, "" if passed else "blog.Tag: 59 rows restored, the manifest records 60")
    return finish_report(report)


@pytest.fixture
def healthy(db):
    verified_backup(timedelta(hours=1))
    drill(True)


def ids() -> list[str]:
    return [m.id for m in recoverability_check()]


@pytest.mark.django_db
def test_system_check_fires_for_an_old_backup_and_a_failed_drill(settings):
    assert ids() == ["dbs_admin.W001"]  # no verified backup at all
    verified_backup(timedelta(hours=30))  # default RPO: 26 h
    [warning] = recoverability_check()
    assert warning.id == "dbs_admin.W001" and "older than the RPO" in warning.msg
    assert isinstance(warning, checks.Warning)
    verified_backup(timedelta(hours=2))
    assert ids() == []
    drill(False)
    [warning] = recoverability_check()
    assert warning.id == "dbs_admin.W002" and "row counts" in warning.msg
    drill(True)
    assert ids() == []
    settings.DBS_ADMIN = {"RPO": timedelta(minutes=30)}
    assert ids() == ["dbs_admin.W001"]


@pytest.mark.django_db
def test_system_check_is_registered_and_runs_with_manage_check(capsys):
    verified_backup(timedelta(days=5))
    call_command("check")
    assert "dbs_admin.W001" in capsys.readouterr().err


def run_status(*args) -> tuple[int, str]:
    from io import StringIO

    out = StringIO()
    try:
        call_command("dbs_status", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


@pytest.mark.django_db
def test_dbs_status_exit_codes():
    code, out = run_status()
    assert code == 1 and "UNHEALTHY" in out and "No verified backup" in out
    verified_backup(timedelta(hours=1))
    assert run_status()[0] == 0
    drill(False)
    code, out = run_status("--json")
    data = json.loads(out)
    assert code == 1 and data["healthy"] is False
    assert data["last_drill"]["failed_checks"] == ["row counts"]
    drill(True)
    code, out = run_status("--json")
    assert code == 0 and json.loads(out)["healthy"] is True


@pytest.mark.django_db
def test_status_view_access_rules(client, superuser, staff_user, settings, healthy):
    url = reverse("dbs_admin:status")
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and reverse("admin:login") in anonymous["Location"]
    assert client.get(url, {"token": "anything"}).status_code == 403  # no token configured: none is right
    settings.DBS_ADMIN = {"STATUS_TOKEN": TOKEN}
    assert client.get(url, {"token": TOKEN}).status_code == 200
    assert client.get(url, HTTP_X_DBS_STATUS_TOKEN=TOKEN).json()["healthy"] is True
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get(url, {"token": TOKEN[:-1] + "X"}).status_code == 403
    assert client.get(url, HTTP_X_DBS_STATUS_TOKEN="").status_code in (302, 403)
    client.force_login(staff_user)
    assert client.get(url).status_code == 403
    client.force_login(superuser)
    ok = client.get(url)
    assert ok.status_code == 200 and ok.json()["last_drill"]["passed"] is True
    assert "no-cache" in ok["Cache-Control"] or "max-age=0" in ok["Cache-Control"]
    assert client.get(url, {"token": "wrong"}).status_code == 403  # a wrong token is wrong, logged in or not


@pytest.mark.django_db
def test_status_view_answers_503_when_unhealthy(client, superuser):
    verified_backup(timedelta(days=3))
    client.force_login(superuser)
    response = client.get(reverse("dbs_admin:status"))
    assert response.status_code == 503
    assert response.json()["codes"] == ["backup_too_old"]


@pytest.mark.django_db
def test_weekly_drill_schedule_exists_after_migrate_and_is_not_overwritten():
    from django_celery_beat.models import PeriodicTask

    from dbs_admin.jobs import schedules
    from dbs_admin.jobs.schedules import ensure_default_schedules
    from dbs_admin.jobs.tasks import DRILL_TASK_NAME as TASK_NAME

    task = PeriodicTask.objects.get(name=schedules.DRILL_NAME)  # made by post_migrate of the test database
    assert task.task == TASK_NAME == schedules.DRILL_TASK and task.enabled
    assert task.crontab.day_of_week == "0" and (task.crontab.hour, task.crontab.minute) == ("4", "0")
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)
    assert ensure_default_schedules() is False
    assert PeriodicTask.objects.get(pk=task.pk).enabled is False  # the user's choice stands
    PeriodicTask.objects.filter(pk=task.pk).delete()
    assert ensure_default_schedules() is True
    assert PeriodicTask.objects.filter(name=schedules.DRILL_NAME).count() == 1


@pytest.mark.django_db
def test_dashboard_shows_the_failed_check_of_the_newest_drill_and_a_run_button(client, superuser):
    drill(False)
    client.force_login(superuser)
    page = client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    assert "Run drill" in page and reverse("admin:dbs_admin_drillreport_run") in page
    assert "row counts: blog.Tag: 59 rows restored" in page
