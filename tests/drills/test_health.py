"""Health: the system check, ``dbs_status`` exit codes, the JSON status view's access rules, the default schedule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import checks
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from dbs_admin.drills import system_checks
from dbs_admin.drills.report import finish_report, record_check, start_report
from dbs_admin.drills.system_checks import recoverability_check
from dbs_admin.models import Backup, Job

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
    system_checks.reset()  # once per process: each reading here is a fresh "process"
    return [m.id for m in recoverability_check()]


@pytest.fixture
def keys_configured(settings, tmp_path):
    """RECIPIENTS and a DRILL_IDENTITY, as `dbs_keys init` prints them (health reads the settings only)."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": ["dbs1-some-recipient"],
                          "DRILL_IDENTITY": str(tmp_path / "drill.identity")}


@pytest.mark.django_db
def test_a_new_install_is_not_configured_yet_not_failing(keys_configured, settings):
    """No backup yet is a warning (W003), never W001: monitors must not page for a site installed an hour ago."""
    system_checks.reset()
    [warning] = recoverability_check()
    assert warning.id == "dbs_admin.W003" and "No backup yet" in warning.msg and "RECIPIENTS" not in warning.msg
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": [], "DRILL_IDENTITY": None}
    system_checks.reset()
    [warning] = recoverability_check()
    assert "RECIPIENTS" in warning.msg and "DRILL_IDENTITY" in warning.msg and "dbs_keys init" in warning.hint


@pytest.mark.django_db
def test_system_check_fires_for_an_old_backup_failing_backups_and_a_failed_drill(keys_configured, settings):
    Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.FAILED, message="target unreachable")
    assert ids() == ["dbs_admin.W001"]  # attempted, none verified: failing, not "not yet"
    verified_backup(timedelta(hours=30))  # default RPO: 26 h
    system_checks.reset()
    [warning] = recoverability_check()
    assert warning.id == "dbs_admin.W001" and "older than the RPO" in warning.msg
    assert isinstance(warning, checks.Warning)
    verified_backup(timedelta(hours=2))
    assert ids() == []
    drill(False)
    system_checks.reset()
    [warning] = recoverability_check()
    assert warning.id == "dbs_admin.W002" and "row counts" in warning.msg
    drill(True)
    assert ids() == []
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RPO": timedelta(minutes=30)}
    assert ids() == ["dbs_admin.W001"]


@pytest.mark.django_db
def test_system_check_speaks_once_per_process_and_never_in_dbs_commands(keys_configured, capsys, settings,
                                                                        tmp_path, monkeypatch, media_root):
    verified_backup(timedelta(days=5))
    system_checks.reset()
    call_command("check")
    call_command("check")
    assert capsys.readouterr().err.count("dbs_admin.W001") == 1
    system_checks.reset()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "ARGON2": {"time_cost": 1, "memory_kib": 1024, "parallelism": 1,
                                                             "allow_weak": True}}
    monkeypatch.setenv("DBS_PASSPHRASE", "a passphrase for this test")
    call_command("dbs_backup", "--no-input", "--output", str(tmp_path / "b.dbs"), skip_checks=False)
    assert (tmp_path / "b.dbs").is_file()
    assert "dbs_admin.W" not in capsys.readouterr().err  # dbs_backup is the fix for W001: it never says it


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
def test_dbs_status_exit_codes(keys_configured, settings):
    code, out = run_status()
    assert code == 0 and "not set up yet: No backup yet" in out and "UNHEALTHY" not in out
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": []}
    code, out = run_status()
    assert code == 0 and "RECIPIENTS" in out and "dbs_keys init" in out
    code, out = run_status("--json")
    assert json.loads(out)["state"] == "not_configured" and "no_recipients" in json.loads(out)["warning_codes"]
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": ["dbs1-some-recipient"]}
    verified_backup(timedelta(days=2))
    code, out = run_status()
    assert code == 1 and "UNHEALTHY" in out and "older than the RPO" in out
    verified_backup(timedelta(hours=1))
    code, out = run_status()
    assert code == 0 and out.strip().endswith("healthy")
    drill(False)
    code, out = run_status("--json")
    data = json.loads(out)
    assert code == 1 and data["healthy"] is False
    assert data["last_drill"]["failed_checks"] == ["row counts"]
    drill(True)
    code, out = run_status("--json")
    assert code == 0 and json.loads(out)["healthy"] is True and json.loads(out)["state"] == "healthy"


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
def test_status_view_answers_200_while_not_configured_and_503_when_failing(client, superuser):
    client.force_login(superuser)
    fresh = client.get(reverse("dbs_admin:status"))
    assert fresh.status_code == 200 and fresh.json()["state"] == "not_configured"
    assert fresh.json()["codes"] == [] and "backup_missing" in fresh.json()["warning_codes"]
    verified_backup(timedelta(days=3))
    response = client.get(reverse("dbs_admin:status"))
    assert response.status_code == 503
    assert response.json()["codes"] == ["backup_too_old"] and response.json()["state"] == "failing"


@pytest.mark.django_db
def test_default_schedules_wait_disabled_until_they_can_run(settings):
    """migrate makes the daily backup and the weekly drill; without keys they are off, and turn on once
    the keys are configured, unless the user switched them off."""
    from django_celery_beat.models import PeriodicTask

    from dbs_admin.jobs import schedules
    from dbs_admin.jobs.schedules import enable_ready_schedules, ensure_default_schedules
    from dbs_admin.jobs.tasks import DRILL_TASK_NAME as TASK_NAME

    drill_task = PeriodicTask.objects.get(name=schedules.DRILL_NAME)  # made by post_migrate of the test database
    backup_task = PeriodicTask.objects.get(name=schedules.backup_task_name("local"))
    assert drill_task.task == TASK_NAME == schedules.DRILL_TASK and backup_task.task == schedules.BACKUP_TASK
    assert not drill_task.enabled and not backup_task.enabled  # the test settings have no keys
    assert drill_task.crontab.day_of_week == "0" and (drill_task.crontab.hour, drill_task.crontab.minute) == ("4", "0")
    assert (backup_task.crontab.hour, backup_task.crontab.minute) == ("2", "0")
    assert schedules.next_runs() == []

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": ["dbs1-some-recipient"]}
    assert enable_ready_schedules() == [backup_task.name]  # the drill still lacks its identity
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DRILL_IDENTITY": "/srv/keys/drill.identity"}
    assert enable_ready_schedules() == [drill_task.name]
    assert {r.name for r in schedules.next_runs()} == {drill_task.name, backup_task.name}

    PeriodicTask.objects.filter(pk=drill_task.pk).update(enabled=False, description=schedules.BY_PAGE)
    assert ensure_default_schedules() is False and enable_ready_schedules() == []
    assert PeriodicTask.objects.get(pk=drill_task.pk).enabled is False  # the user's choice stands
    PeriodicTask.objects.filter(pk=drill_task.pk).delete()
    assert ensure_default_schedules() is True
    assert PeriodicTask.objects.get(name=schedules.DRILL_NAME).enabled  # it can run now: made enabled


@pytest.mark.django_db
def test_dashboard_shows_the_failed_check_of_the_newest_drill_and_a_run_button(client, superuser):
    drill(False)
    client.force_login(superuser)
    page = client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    assert "Run drill" in page and reverse("admin:dbs_admin_drillreport_run") in page
    assert "row counts: blog.Tag: 59 rows restored" in page
