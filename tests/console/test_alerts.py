"""Unattended jobs that fail, are lost, never start or are skipped reach ADMINS by mail; attended ones do not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.jobs.tasks import run_backup, scheduled_backup
from dbs_admin.models import Job
from tests.factories import PASSPHRASE

pytestmark = pytest.mark.usefixtures("private_target")


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_backup_that_fails_is_mailed_with_its_reason(eager, mailoutbox):
    scheduled_backup.apply(kwargs={"target": "local"})  # no RECIPIENTS configured: it cannot seal

    job = Job.objects.get(kind=Job.Kind.BACKUP)
    assert job.state == Job.State.FAILED
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@example.com"]
    assert f"Scheduled backup #{job.pk} on 'local' FAILED" in mail.subject and "recipient" in mail.subject
    assert job.message in mail.body and "started by the schedule" in mail.body


@pytest.mark.django_db(transaction=True)
def test_a_backup_someone_started_is_not_mailed(eager, superuser, mailoutbox):
    from dbs_admin.jobs import handoff
    from dbs_admin.jobs.tasks import BACKUP_PURPOSE

    job = Job.objects.create(kind=Job.Kind.BACKUP, created_by=superuser,
                             params={"kind": "logical", "target": "nowhere", "label": ""})
    run_backup.apply(kwargs={"job_id": job.pk, "secret_ref": handoff.put(PASSPHRASE, purpose=BACKUP_PURPOSE)})

    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "nowhere" in job.message  # they see it on their screen
    assert mailoutbox == []


@pytest.mark.django_db(transaction=True)
def test_lost_and_never_started_unattended_jobs_are_mailed_once(settings, mailoutbox):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 30, "JOB_QUEUE_TIMEOUT": 600}
    long_ago = timezone.now() - timedelta(hours=1)
    lost = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, started_at=long_ago,
                              heartbeat_at=long_ago, worker="celery@gone", created_at=long_ago,
                              params={"target": "local", "kind": "logical", "scheduled": True})
    never = Job.objects.create(kind=Job.Kind.PRUNE, created_at=long_ago, params={"target": "local"})

    assert sorted(reap_lost_jobs()) == sorted([lost.pk, never.pk])
    assert reap_lost_jobs() == []  # reaped once, mailed once

    subjects = sorted(m.subject for m in mailoutbox)
    assert len(subjects) == 2
    assert any(f"Scheduled backup #{lost.pk}" in s and "worker lost" in s for s in subjects)
    assert any(f"Prune #{never.pk}" in s and "Never started" in s for s in subjects)
    assert any("celery@gone" in m.body for m in mailoutbox)


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_run_skipped_for_a_busy_target_is_mailed(eager, superuser, mailoutbox):
    from dbs_admin.jobs import locks

    holder = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, created_by=superuser,
                                started_at=timezone.now(), heartbeat_at=timezone.now(), params={"target": "local"})
    assert locks.acquire("local", holder) is None

    scheduled_backup.apply(kwargs={"target": "local"})

    skipped = Job.objects.exclude(pk=holder.pk).get()
    assert skipped.state == Job.State.CANCELLED and "skipped" in skipped.message
    assert len(mailoutbox) == 1 and "SKIPPED" in mailoutbox[0].subject and f"#{holder.pk}" in mailoutbox[0].subject


@pytest.mark.django_db(transaction=True)
def test_a_broken_mail_setup_does_not_hide_the_failure(eager, settings, mailoutbox, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens

    scheduled_backup.apply(kwargs={"target": "local"})

    job = Job.objects.get(kind=Job.Kind.BACKUP)
    assert job.state == Job.State.FAILED and "recipient" in job.message
    assert "could not mail ADMINS about job" in caplog.text
