"""The Drills list in the admin, and its *Run drill* button run through a real Celery worker on Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from django.urls import reverse
from django.utils.html import escape

from dbs_admin.backups.api import create_backup
from dbs_admin.console.restore_views import RECIPIENTS_ONLY
from dbs_admin.jobs.handed_keys import WRONG_IDENTITY_PASSPHRASE
from dbs_admin.models import AuditEvent, DrillReport, HandoffSecret, Job
from tests import services

from .conftest import IDENTITY_PASSPHRASE
from .test_crash import database_url

REDIS_DB = 14


@pytest.fixture
def drill_redis():
    """This process's Celery app pointed at Redis db 14 (emptied), as a production site would run."""
    with services.celery_on_redis(REDIS_DB) as url:
        yield url


@pytest.fixture
def no_drill_identity(seeded, settings, monkeypatch):
    """Scheduled backups are sealed to the recipient, but no DRILL_IDENTITY is configured (web nor worker)."""
    settings.DBS_ADMIN = {k: v for k, v in settings.DBS_ADMIN.items() if k != "DRILL_IDENTITY"}
    monkeypatch.delenv("DBS_DRILL_IDENTITY_PASSPHRASE")
    return seeded


@pytest.fixture
def worker(drill_redis, settings, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(REDIS_URL=drill_redis, DATABASE_URL=database_url(),
               DJANGO_SETTINGS_MODULE="tests.drills.worker_settings",
               DBS_TEST_DBS_ADMIN=json.dumps(settings.DBS_ADMIN), DBS_VAR_DIR=str(tmp_path / "worker-var"))
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "demo_site", "worker", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"drills-{os.getpid()}@%h"],
        cwd=services.ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_run_drill_button_queues_a_job_that_a_real_worker_runs(seeded, client, superuser, worker):
    create_backup(kind="logical", target="local")
    client.force_login(superuser)
    changelist = reverse("admin:dbs_admin_drillreport_changelist")
    page = client.get(changelist).content.decode()
    assert "Run drill" in page and "No drill has measured a restore time yet" in page

    form = client.get(reverse("admin:dbs_admin_drillreport_run")).content.decode()
    assert "configured drill identity" in form  # it just runs: nothing to type
    response = client.post(reverse("admin:dbs_admin_drillreport_run"), {"target": "local"})
    job = Job.objects.get(kind=Job.Kind.DRILL)
    assert response.status_code == 302 and response["Location"] == reverse("dbs_admin:job", args=[job.pk])
    assert job.params == {"target": "local"}  # no key, no passphrase in the message or the row

    deadline = time.monotonic() + 150
    while not Job.objects.get(pk=job.pk).finished:
        assert time.monotonic() < deadline, f"the drill job did not finish:\n{worker.read_text()[-3000:]}"
        time.sleep(0.3)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, f"{job.message}\n{worker.read_text()[-3000:]}"
    report = DrillReport.objects.get(job=job)
    assert report.passed and f"Drill #{report.pk}" in job.message

    page = client.get(changelist).content.decode()
    assert "<svg" in page and "RTO" in page and report.backup_name in page
    assert report.worker and f"worker={report.worker}" in page.replace("%40", "@")  # a filter by the host
    assert report.backup_name in client.get(changelist, {"worker": report.worker}).content.decode()
    assert report.backup_name not in client.get(changelist, {"worker": "elsewhere"}).content.decode()
    detail = client.get(reverse("admin:dbs_admin_drillreport_change", args=[report.pk])).content.decode()
    assert "smoke: blog: published posts render" in detail and "row counts" in detail
    assert report.worker in detail  # which host ran it


@pytest.mark.django_db
def test_drills_admin_is_superuser_only(client, staff_user, seeded):
    client.force_login(staff_user)
    assert client.get(reverse("admin:dbs_admin_drillreport_changelist")).status_code == 403
    assert client.post(reverse("admin:dbs_admin_drillreport_run"), {"target": "local"}).status_code == 403
    assert not Job.objects.exists()


def wait_for(job: Job, worker, seconds: float = 150) -> Job:
    deadline = time.monotonic() + seconds
    while not Job.objects.get(pk=job.pk).finished:
        assert time.monotonic() < deadline, f"the drill job did not finish:\n{worker.read_text()[-3000:]}"
        time.sleep(0.3)
    job.refresh_from_db()
    return job


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_run_drill_without_an_identity_asks_for_the_key_and_hands_it_to_the_worker(
        no_drill_identity, client, superuser, worker):
    """No DRILL_IDENTITY: the form asks for what opens the backup, checks it at once, and the worker gets it
    sealed (never in the broker message, the Job row or its log), as a restore does."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    create_backup(kind="logical", target="local")  # sealed to the recipient only, as a scheduled backup is
    identity_text = no_drill_identity["identity_path"].read_bytes()
    client.force_login(superuser)
    run_url = reverse("admin:dbs_admin_drillreport_run")
    changelist = client.get(reverse("admin:dbs_admin_drillreport_changelist")).content.decode()
    assert f'href="{run_url}"' in changelist and "Run drill…" in changelist
    dashboard = client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    assert f'href="{run_url}"' in dashboard

    asked = client.post(run_url, {"target": "local"})  # the plain button: asks for the key, queues nothing
    assert asked.status_code == 200 and 'name="passphrase"' in asked.content.decode() and not Job.objects.exists()

    def post(passphrase: str, identity: bytes | None):
        data = {"target": "local", "passphrase": passphrase}
        if identity is not None:
            data["identity"] = SimpleUploadedFile("drill.identity", identity)
        return client.post(run_url, data)

    wrong = post("not the identity passphrase", identity_text)
    assert wrong.status_code == 400 and WRONG_IDENTITY_PASSPHRASE in wrong.content.decode()
    no_identity = post(IDENTITY_PASSPHRASE, None)  # a passphrase alone cannot open a recipient-only backup
    assert no_identity.status_code == 400 and escape(RECIPIENTS_ONLY) in no_identity.content.decode()
    assert not Job.objects.exists()
    assert AuditEvent.objects.filter(action="drill", outcome=AuditEvent.Outcome.DENIED).count() == 2

    response = post(IDENTITY_PASSPHRASE, identity_text)
    job = Job.objects.get(kind=Job.Kind.DRILL)
    assert response.status_code == 302 and response["Location"] == reverse("dbs_admin:job", args=[job.pk])
    assert IDENTITY_PASSPHRASE not in repr(job.params) and job.params["key"] == "handed"
    for row in HandoffSecret.objects.all():  # sealed until the worker takes it
        assert IDENTITY_PASSPHRASE.encode() not in bytes(row.ciphertext)
    job = wait_for(job, worker)
    assert job.state == Job.State.SUCCEEDED, f"{job.message}\n{worker.read_text()[-3000:]}"
    assert DrillReport.objects.get(job=job).passed
    assert not HandoffSecret.objects.exists()  # read once, deleted
    assert IDENTITY_PASSPHRASE not in worker.read_text()
    assert AuditEvent.objects.filter(action="drill", outcome=AuditEvent.Outcome.OK).count() == 1
    (result,) = AuditEvent.objects.filter(action="drill-result")  # and how it ended
    assert result.outcome == AuditEvent.Outcome.OK and f"(job #{job.pk})" in result.object_repr
