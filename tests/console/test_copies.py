"""Several copies from the console and the schedule: one target failing (a missing bucket) fails its copy only;
the job says so, a scheduled run mails ADMINS, and retention runs on each target that holds a copy."""

from __future__ import annotations

import json
from datetime import time

import pytest
from django.urls import reverse

from blog.seeding import seed
from dbs_admin.jobs import schedules
from dbs_admin.jobs.tasks import scheduled_backup
from dbs_admin.models import Backup, BackupCopy, Job
from dbs_admin.sealed import Identity


@pytest.fixture
def two_targets(settings, tmp_path, s3_storage, s3_server):
    """``local`` (a folder) and ``broken``: S3 storage on moto whose bucket does not exist."""
    settings.STORAGES = {**settings.STORAGES, "nobucket": {
        "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_server.storage_options("no-such-bucket")}}
    identity = Identity.generate()
    settings.DBS_ADMIN = {
        **settings.DBS_ADMIN,
        "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "t")},
                    "broken": {"kind": "storage", "storage": "nobucket"}},
        "PRIVATE_ROOT": str(tmp_path / "private"), "RECIPIENTS": [identity.recipient],
        "RETENTION": {"*": {"last": 5}},
    }
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return identity


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_backup_with_a_failing_copy_keeps_the_good_one_and_mails_the_failure(eager, two_targets,
                                                                                          mailoutbox):
    seed(posts=3, images=0, seed=5)
    task = schedules.save_target("local", enabled=True, at=time(2, 0),
                                 retention={"last": 3}, copies=["broken"])
    scheduled_backup.apply(kwargs=json.loads(task.kwargs))

    job = Job.objects.get(kind=Job.Kind.BACKUP)
    assert job.state == Job.State.SUCCEEDED, job.message
    assert "on local." in job.message and "The copy on 'broken' FAILED" in job.message
    assert "NoSuchBucket" in job.message
    copies = {c.target: c.state for c in job.backup.copies.all()}
    assert copies == {"local": BackupCopy.State.STORED, "broken": BackupCopy.State.FAILED}
    assert len(mailoutbox) == 1
    assert "the copy on 'broken' FAILED" in mailoutbox[0].subject and "NoSuchBucket" in mailoutbox[0].body
    prunes = Job.objects.filter(kind=Job.Kind.PRUNE)
    assert [(p.params["target"], p.state) for p in prunes] == [("local", Job.State.SUCCEEDED)]
    assert prunes[0].params["retention"] == {"last": 3}


@pytest.mark.django_db(transaction=True)
def test_back_up_now_with_a_copy_lists_every_copy_with_its_state(eager, two_targets, su_client, mailoutbox):
    response = su_client.post(reverse("dbs_admin:backup_now"), {
        "kind": "logical", "target": "local", "copies": ["broken"], "key": "recipients"})
    assert response.status_code in (200, 302)
    job = Job.objects.get(kind=Job.Kind.BACKUP)
    assert job.params["copies"] == ["broken"] and job.state == Job.State.SUCCEEDED, job.message
    assert mailoutbox == []  # someone is watching: the job's message says it
    page = su_client.get(reverse("admin:dbs_admin_backup_changelist")).content.decode()
    backup = Backup.objects.get()
    assert backup.name in page and "broken (FAILED)" in page and "NoSuchBucket" in page


@pytest.mark.django_db
def test_download_streams_a_copy_from_s3_through_the_signed_link_and_says_which(settings, tmp_path, s3_storage,
                                                                                  s3_server, s3_bucket, superuser,
                                                                                  su_client):
    """The first stored copy that opens is streamed (here the S3 one: the local copy's file is gone)."""
    from dbs_admin import create_backup
    from dbs_admin.models import AuditEvent

    s3_storage("backups")
    identity = Identity.generate()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "PRIVATE_ROOT": str(tmp_path / "private"),
                          "TARGETS": {"a-local": {"kind": "local", "path": str(tmp_path / "t")},
                                      "s3": {"kind": "storage", "storage": "backups"}}}
    result = create_backup(target=["a-local", "s3"], recipients=[identity.recipient])
    (tmp_path / "t" / result.name).unlink()

    response = su_client.get(su_client.get(reverse("dbs_admin:download_link", args=[result.backup_id]))["Location"])

    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert body == s3_server.client().get_object(Bucket=s3_bucket, Key=result.name)["Body"].read()
    assert int(response["Content-Length"]) == len(body) == result.size
    events = {(e.outcome, e.detail.split(":")[0]) for e in AuditEvent.objects.filter(action="download")}
    assert events == {(AuditEvent.Outcome.FAILED, "target a-local"), (AuditEvent.Outcome.OK, "from target s3")}
