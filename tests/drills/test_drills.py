"""Drills of good and broken backups on the site's own engine (SQLite, or PostgreSQL with DATABASE_URL)."""

from __future__ import annotations

import pytest
from django.db import connection

from blog.models import Attachment, Tag
from dbs_admin.backups.api import create_backup
from dbs_admin.drills.runner import run_drill
from dbs_admin.drills.scratch import drills_root, scratch_exists
from dbs_admin.models import Backup

from .crafting import damage_beyond_repair, reseal_without_row

DATA_CHECKS = ["tables and columns", "row counts", "foreign keys", "file hashes", "migrations", "system checks",
               "smoke: blog: published posts render"]


def names(report, passed=None):
    return [c.name for c in report.checks.all() if passed is None or c.passed == passed]


def assert_scratch_gone(report):
    assert not scratch_exists(report.pk)
    assert not any(p.name.startswith(f"dbs_drill_{report.pk}.") for p in drills_root().iterdir())


@pytest.mark.django_db
def test_good_logical_backup_passes_every_check(seeded, mailoutbox):
    result = create_backup(kind="logical", target="local")
    report = run_drill(target="local")  # the newest backup of the target, opened with DRILL_IDENTITY
    assert report.passed, [(c.name, c.detail) for c in report.checks.all() if not c.passed] or report.error
    assert report.backup_name == result.name and report.backup_id == result.backup_id
    assert names(report) == ["fetch", "backup integrity", "schema", "restore", *DATA_CHECKS]
    assert report.engine == connection.vendor
    assert report.restore_seconds > 0 and report.backup_age_seconds >= 0
    smoke = report.checks.get(name="smoke: blog: published posts render")
    assert "published post pages rendered" in smoke.detail
    assert_scratch_gone(report)
    assert mailoutbox == []


@pytest.mark.django_db(transaction=True)
def test_good_native_backup_passes(seeded):
    create_backup(kind="native", target="local")
    report = run_drill(target="local")
    assert report.passed, [(c.name, c.detail) for c in report.checks.all() if not c.passed] or report.error
    assert Backup.objects.get(pk=report.backup_id).kind == "native"
    assert_scratch_gone(report)


@pytest.mark.django_db
def test_backup_damaged_beyond_repair_fails_integrity(seeded, mailoutbox):
    result = create_backup(kind="logical", target="local")
    damage_beyond_repair(result.path)
    report = run_drill(str(result.path))
    assert report.passed is False
    assert names(report, passed=False) == ["backup integrity"]
    assert "damaged beyond repair" in report.checks.get(name="backup integrity").detail
    assert "restore" not in names(report)  # nothing is restored from a file that cannot be trusted
    assert_scratch_gone(report)
    assert len(mailoutbox) == 1 and "backup integrity" in mailoutbox[0].subject


@pytest.mark.django_db
def test_backup_missing_a_row_fails_row_counts(seeded, tmp_path, mailoutbox):
    spare = Tag.objects.create(name="never used", slug="never-used")  # no post points at it
    result = create_backup(kind="logical", target="local")
    broken = tmp_path / "lost-a-row.dbs"
    reseal_without_row(result.path, broken, label="blog.Tag", pk=spare.pk, identity=seeded["identity"],
                       recipient=seeded["identity"].recipient)
    report = run_drill(str(broken))
    assert report.passed is False
    assert "row counts" in names(report, passed=False)
    assert "blog.Tag" in report.checks.get(name="row counts").detail
    assert_scratch_gone(report)
    assert "row counts" in mailoutbox[0].subject


@pytest.mark.django_db
def test_backup_missing_a_file_fails_file_hashes_and_mails_admins(seeded, mailoutbox):
    lost = Attachment.objects.order_by("pk").first()
    lost.image.storage.delete(lost.image.name)  # gone from disk before the backup ran
    result = create_backup(kind="logical", target="local")
    report = run_drill(str(result.path))
    assert report.passed is False
    assert names(report, passed=False) == ["file hashes"]
    assert lost.image.name in report.checks.get(name="file hashes").detail
    assert report.restore_seconds is not None  # the restore itself worked: the file was never in the backup
    assert_scratch_gone(report)
    [mail] = mailoutbox
    assert mail.to == ["ops@example.com"]
    assert "FAILED" in mail.subject and "file hashes" in mail.subject
    assert lost.image.name in mail.body


@pytest.mark.django_db
def test_drill_without_a_key_is_a_failed_report_not_a_crash(seeded, settings, mailoutbox):
    create_backup(kind="logical", target="local")
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DRILL_IDENTITY": None}
    report = run_drill(target="local")
    assert report.passed is False and "DRILL_IDENTITY" in report.error
    assert "--" not in report.error  # the service's sentence names no command-line flag (the console shows it)
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_dbs_drill_without_any_key_says_which_flags_and_records_nothing(seeded, settings, monkeypatch):
    """Nothing ran: no failed drill is recorded (it would turn health red and mail ADMINS for a typo)."""
    from django.core.management import CommandError, call_command

    from dbs_admin.models import DrillReport

    create_backup(kind="logical", target="local")
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DRILL_IDENTITY": None}
    monkeypatch.delenv("DBS_PASSPHRASE", raising=False)
    for flag in ("--no-input", "--noinput"):
        with pytest.raises(CommandError, match="--passphrase-file.*--identity.*dbs_keys init") as error:
            call_command("dbs_drill", "--latest", flag)
        assert error.value.returncode == 3
    assert not DrillReport.objects.exists()


@pytest.mark.django_db
def test_wrong_passphrase_names_backup_integrity(seeded):
    result = create_backup(kind="logical", target="local", passphrase="the right one")
    report = run_drill(str(result.path), passphrase="a wrong one")
    assert report.passed is False
    assert names(report, passed=False) == ["backup integrity"]
    assert "passphrase" in report.checks.get(name="backup integrity").detail.lower()


@pytest.mark.django_db
def test_drill_of_the_newest_backup_on_an_sftp_target(seeded, settings, tmp_path):
    """``--latest --target offsite``: the file is downloaded over SFTP (counted in the RTO) and removed after."""
    import shutil
    import uuid

    from tests import services

    sshd = services.ssh_server()
    folder = sshd.root / f"drills-{uuid.uuid4().hex[:8]}"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {**settings.DBS_ADMIN["TARGETS"], "offsite": {
        "kind": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "key_filename": str(sshd.key_path), "known_hosts": str(sshd.known_hosts), "path": str(folder),
        "timeout": 10,
    }}}
    try:
        result = create_backup(kind="logical", target="offsite")
        report = run_drill(target="offsite")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert report.passed, [(c.name, c.detail) for c in report.checks.all() if not c.passed] or report.error
    assert report.backup_name == result.name
    fetch = report.checks.get(name="fetch")
    assert f"dbs_drill_{report.pk}.download" in fetch.detail and fetch.seconds <= report.restore_seconds
    assert_scratch_gone(report)


@pytest.mark.django_db
def test_a_cancelled_drill_is_recorded_but_not_alerted(seeded, mailoutbox):
    result = create_backup(kind="logical", target="local")
    report = run_drill(str(result.path), cancel=lambda: True)
    assert report.passed is False and "cancelled" in report.error
    assert mailoutbox == []
    assert_scratch_gone(report)


@pytest.mark.django_db
def test_dbs_drill_command_exit_codes_and_output(seeded, capsys):
    from django.core.management import CommandError, call_command

    result = create_backup(kind="logical", target="local")
    damage_beyond_repair(result.path)
    with pytest.raises(SystemExit) as exit_info:
        call_command("dbs_drill", str(result.path), "--no-mail")
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert "FAIL  backup integrity" in out and "FAILED" in out and "failed: backup integrity" in out
    with pytest.raises(CommandError, match="FILE or --latest"):
        call_command("dbs_drill")
    with pytest.raises(SystemExit):
        call_command("dbs_drill", str(result.path.with_name("no-such.dbs")), "--no-mail")
    assert "no backup file" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_task_creates_its_job_and_records_the_drill(seeded):
    """What beat sends (no arguments, no secret): a Job is created, the drill runs, the job says how it went."""
    from dbs_admin.jobs.tasks import run_drill_task
    from dbs_admin.models import DrillReport, Job

    create_backup(kind="logical", target="local")
    run_drill_task.apply()  # executed here, the way a worker executes the beat message
    job = Job.objects.get(kind=Job.Kind.DRILL)
    report = DrillReport.objects.get(job=job)
    assert job.state == Job.State.SUCCEEDED and job.created_by is None
    assert report.passed and f"Drill #{report.pk}" in job.message and "passed" in job.message
    assert job.backup_id == report.backup_id


@pytest.mark.django_db
def test_the_newest_backup_the_drill_key_opens_is_drilled_and_the_worker_recorded(seeded, settings):
    """A manual backup sealed with a passphrase only is newer than the scheduled one: the unattended drill
    (identity) drills the scheduled one instead of failing on a backup it was never meant to open."""
    scheduled = create_backup(kind="logical", target="local")  # sealed to RECIPIENTS
    create_backup(kind="logical", target="local", passphrase="a manual backup's passphrase")
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HOST_NAME": "drill-host"}
    report = run_drill(target="local", alert=False)
    assert report.passed, report.error
    assert report.backup_name == scheduled.name and report.worker == "drill-host"

    report = run_drill(target="local", passphrase="a manual backup's passphrase", alert=False)
    assert report.passed and report.backup_name != scheduled.name  # a passphrase opens the newest


@pytest.mark.django_db
def test_a_drill_key_that_opens_no_backup_says_so(seeded, settings, tmp_path):
    create_backup(kind="logical", target="local", passphrase="a manual backup's passphrase")
    report = run_drill(target="local", alert=False)
    assert not report.passed and report.backup_name == "(none)"
    assert "none of the 1 backup(s) on target 'local' is sealed to the drill's key" in report.error
