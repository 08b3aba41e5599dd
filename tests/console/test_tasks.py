"""Tasks run in this process (Celery eager mode) for what does not need a separate worker:
scheduled backups to recipient keys followed by retention, validation, cancel, deletion, throttled progress."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from blog.seeding import seed
from dbs_admin.conf import dbs_settings
from dbs_admin.jobs import job_run as jobs_mod
from dbs_admin.jobs import reaper
from dbs_admin.jobs.job_run import JobRun
from dbs_admin.jobs.tasks import run_backup, scheduled_backup
from dbs_admin.models import AuditEvent, Backup, Job, TargetLock
from dbs_admin.sealed import Identity
from dbs_admin.targets import get_target
from tests.factories import PASSPHRASE, make_sealed_backup, target_path

from .conftest import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_target")]
# Tests that run a job are transactional: the job's companion thread writes through its own connection.


@pytest.fixture
def fast_argon2(settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN,
                          "ARGON2": {"time_cost": 1, "memory_kib": 8192, "parallelism": 1, "allow_weak": True}}


@pytest.mark.django_db(transaction=True)
def test_scheduled_backup_uses_recipients_then_applies_the_schedules_retention(eager, settings):
    identity = Identity.generate()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": [identity.recipient]}
    now = timezone.now()
    old = [make_sealed_backup(created_at=now - timedelta(days=d)) for d in (30, 20, 10)]
    old_paths = [target_path(b) for b in old]
    seed(posts=5, images=0, seed=2)
    scheduled_backup.apply(kwargs={"target": "local", "retention": {"last": 2}})
    backup_job = Job.objects.get(kind=Job.Kind.BACKUP)
    assert backup_job.state == Job.State.SUCCEEDED, backup_job.message
    assert backup_job.created_by is None and backup_job.params["scheduled"]
    new = backup_job.backup
    assert [s["type"] for s in new.key_slots] == ["recipient"]  # no passphrase slot
    prune_job = Job.objects.get(kind=Job.Kind.PRUNE)
    assert prune_job.state == Job.State.SUCCEEDED, prune_job.message
    assert set(Backup.objects.values_list("name", flat=True)) == {new.name, old[2].name}
    assert [p.exists() for p in old_paths] == [False, False, True]
    assert AuditEvent.objects.filter(action="prune").count() == 2


@pytest.mark.django_db(transaction=True)
def test_scheduled_backup_without_recipients_fails_with_a_clear_message(eager):
    scheduled_backup.apply(kwargs={"target": "local"})
    job = Job.objects.get(kind=Job.Kind.BACKUP)
    assert job.state == Job.State.FAILED and "recipient" in job.message
    assert not Job.objects.filter(kind=Job.Kind.PRUNE).exists()


@pytest.mark.django_db(transaction=True)
def test_validate_action_records_the_backups_state(eager, su_client):
    good, bad = make_sealed_backup(), make_sealed_backup(status=Backup.Status.UNVERIFIED)
    path = target_path(bad)
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 7):  # damage everything, both copies: beyond repair
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    response = su_client.post(reverse("admin:dbs_admin_backup_changelist"), {
        "action": "validate", "_selected_action": [good.pk, bad.pk]})
    assert response.status_code == 302
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.status == Backup.Status.OK and good.verified_at is not None
    jobs = {j.backup_id: j for j in Job.objects.filter(kind=Job.Kind.VALIDATE)}
    assert jobs[good.pk].state == Job.State.SUCCEEDED
    assert bad.status == Backup.Status.DAMAGED and jobs[bad.pk].state == Job.State.FAILED
    assert jobs[bad.pk].message.startswith("Damaged:")


@pytest.mark.django_db(transaction=True)
def test_backup_page_reads_as_tables_and_its_validate_button_ends_in_a_done_job(eager, su_client, fast_argon2):
    from dbs_admin import create_backup

    seed(posts=3, images=1, seed=2)
    backup = Backup.objects.get(name=create_backup(target="local", passphrase=PASSPHRASE).name)
    Backup.objects.filter(pk=backup.pk).update(status=Backup.Status.UNVERIFIED, healing_margin=None)
    page = su_client.get(reverse("admin:dbs_admin_backup_change", args=[backup.pk])).content.decode()
    assert 'id="dbs-backup-summary"' in page and "KB</td>" in page  # the size in words, not bytes
    assert "Argon2id, t=1" in page and 'id="dbs-copies"' in page and "<td>local</td>" in page
    assert "<td>blog.Post</td>" in page and '"counts"' not in page  # counts per model, no raw JSON
    assert "not measured yet" in page
    for button in ("dbs-detail-download", "dbs-detail-validate", "dbs-detail-restore"):
        assert f'id="{button}"' in page
    response = su_client.post(reverse("dbs_admin:backup_validate", args=[backup.pk]))
    job = Job.objects.get(kind=Job.Kind.VALIDATE)
    assert response.status_code == 302 and response["Location"] == reverse("dbs_admin:job", args=[job.pk])
    assert (job.state, job.stage, job.progress) == (Job.State.SUCCEEDED, "done", 1.0)
    backup.refresh_from_db()
    assert backup.status == Backup.Status.OK
    page = su_client.get(reverse("admin:dbs_admin_backup_change", args=[backup.pk])).content.decode()
    assert "full: both copies" in page
    assert AuditEvent.objects.filter(action="validate", backup=backup).exists()
    job_page = su_client.get(response["Location"]).content.decode()
    assert f"Job #{job.pk} · Validate" in job_page and "(queued)" not in job_page and "validating" not in job_page


def _check_contents(client, **data):
    return client.post(reverse("dbs_admin:restore_check"), {"passphrase": PASSPHRASE, "action": "validate", **data})


@pytest.mark.django_db(transaction=True)
def test_check_the_contents_decrypts_and_reads_every_byte_and_restores_nothing(eager, su_client):
    from dbs_admin import create_backup
    from dbs_admin.models import HandoffSecret

    seed(posts=4, images=2, seed=8)
    backup = Backup.objects.get(name=create_backup(target="local", passphrase=PASSPHRASE).name)
    Backup.objects.filter(pk=backup.pk).update(status=Backup.Status.UNVERIFIED, verified_at=None)
    from blog.models import Post

    Post.objects.filter(pk__in=list(Post.objects.values_list("pk", flat=True)[:2])).delete()

    response = _check_contents(su_client, backup=backup.pk)
    job = Job.objects.get(kind=Job.Kind.VALIDATE)
    assert response.status_code == 302 and response["Location"] == reverse("dbs_admin:job", args=[job.pk])
    assert job.state == Job.State.SUCCEEDED, job.message
    assert "decrypted and checked" in job.message and "2 files" in job.message
    assert job.params["decrypt"] and PASSPHRASE not in str(job.params)
    backup.refresh_from_db()
    assert backup.status == Backup.Status.OK and backup.verified_at is not None
    assert Post.objects.count() == 2  # nothing was restored
    assert not HandoffSecret.objects.exists() and not Job.objects.filter(kind=Job.Kind.RESTORE).exists()
    assert AuditEvent.objects.filter(action="validate", backup=backup).exists()


@pytest.mark.django_db(transaction=True)
def test_check_the_contents_fails_a_backup_whose_blocks_are_fine_but_contents_are_not(eager, su_client):
    """The keyless check passes (every block intact); only reading the contents tells it would not restore."""
    backup = make_sealed_backup(payload=b"not a backup payload\n" * 200, status=Backup.Status.UNVERIFIED)
    su_client.post(reverse("admin:dbs_admin_backup_changelist"), {"action": "validate",
                                                                   "_selected_action": [backup.pk]})
    keyless = Job.objects.get(kind=Job.Kind.VALIDATE)
    assert keyless.state == Job.State.SUCCEEDED, keyless.message

    _check_contents(su_client, backup=backup.pk)
    job = Job.objects.filter(kind=Job.Kind.VALIDATE).latest("pk")
    backup.refresh_from_db()
    assert job.state == Job.State.FAILED and job.message.startswith("Damaged:"), job.message
    assert backup.status == Backup.Status.DAMAGED


@pytest.mark.django_db(transaction=True)
def test_check_the_contents_of_an_upload_removes_the_upload(eager, su_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    backup = make_sealed_backup()
    data = target_path(backup).read_bytes()
    _check_contents(su_client, upload=SimpleUploadedFile("x.dbs", data, "application/octet-stream"))
    job = Job.objects.get(kind=Job.Kind.VALIDATE)
    assert job.backup is None and job.params["upload"] and job.state == Job.State.FAILED  # junk contents
    assert not Path(job.params["upload"]).exists()
    assert list((Path(dbs_settings.PRIVATE_ROOT) / "uploads").glob("*")) == []
    page = su_client.get(reverse("dbs_admin:job", args=[job.pk]))
    assert page.status_code == 200 and "Damaged:" in page.content.decode()


def test_check_the_contents_with_a_wrong_passphrase_queues_nothing(su_client):
    backup = make_sealed_backup()
    response = _check_contents(su_client, backup=backup.pk, passphrase="not the passphrase at all")
    assert response.status_code == 400 and "Wrong passphrase" in response.content.decode()
    assert not Job.objects.exists()


def test_delete_action_removes_files_on_every_target_and_audits(su_client):
    backup = make_sealed_backup()
    path = target_path(backup)
    url = reverse("admin:dbs_admin_backup_changelist")
    confirm = su_client.post(url, {"action": "delete_with_files", "_selected_action": [backup.pk]})
    assert confirm.status_code == 200 and b"dbs-delete-yes" in confirm.content and path.exists()
    done = su_client.post(url, {"action": "delete_with_files", "_selected_action": [backup.pk],
                                "confirmed": "yes"})
    assert done.status_code == 302
    assert not path.exists() and not Backup.objects.exists()
    event = AuditEvent.objects.get(action="delete")
    assert event.object_repr == backup.name and event.username == "root"


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_backup_and_leaves_nothing(su_client, superuser, fast_argon2, settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "BATCH_SIZE": 5}  # many cancel checks, a slower backup
    seed(posts=3000, images=10, seed=5)
    job = Job.objects.create(kind=Job.Kind.BACKUP, created_by=superuser,
                             params={"kind": "logical", "target": "local", "label": "cancel me"})
    before = set(Path(dbs_settings.PRIVATE_ROOT).glob("create-*"))
    thread = threading.Thread(target=lambda: run_backup.apply(kwargs={"job_id": job.pk, "secret_ref": None}))
    settings_recipients = Identity.generate().recipient
    from django.test import override_settings

    with override_settings(DBS_ADMIN={**dbs_settings.as_dict(), "RECIPIENTS": [settings_recipients]}):
        thread.start()
        wait_for(lambda: Job.objects.get(pk=job.pk).state == Job.State.RUNNING, 60, 0.02, "the backup to start")
        response = su_client.post(reverse("dbs_admin:job_cancel", args=[job.pk]), HTTP_HX_REQUEST="true")
        assert response.status_code == 200 and b"cancelling" in response.content
        thread.join(60)
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED, job.message
    assert not Backup.objects.exists()
    assert set(Path(dbs_settings.PRIVATE_ROOT).glob("create-*")) == before
    folder = get_target("local").local_path("x.dbs").parent
    assert not [p for p in folder.glob("*") if "cancel-me" in p.name]
    assert AuditEvent.objects.filter(action="cancel").exists()


@pytest.mark.django_db(transaction=True)
def test_progress_is_written_by_the_companion_thread_at_most_twice_a_second(monkeypatch):
    job = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.QUEUED)
    run = JobRun(job)
    writes = []
    queryset_class = type(Job.objects.all())
    real_update = queryset_class.update
    monkeypatch.setattr(queryset_class, "update", lambda qs, **kw: writes.append(kw) or real_update(qs, **kw))
    assert run.claim()
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 1.6:
        run.progress("rows", i, 100_000)
        i += 1
    elapsed = time.monotonic() - start
    progress_writes = [w for w in writes if "bytes_done" in w]
    assert i > 1000  # many reports...
    assert 2 <= len(progress_writes) <= 2 + elapsed / jobs_mod.WRITE_INTERVAL  # ...few writes
    wait_for(lambda: Job.objects.get(pk=job.pk).bytes_done > 0, 5, 0.1, "a progress write")
    run.finish(Job.State.SUCCEEDED, "ok")
    job.refresh_from_db()
    assert job.progress == 1.0 and job.state == Job.State.SUCCEEDED and job.bytes_done > 0


def test_progress_partial_shows_stage_bytes_elapsed_and_eta(su_client):
    now = timezone.now()
    job = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, started_at=now - timedelta(seconds=30),
                             stage="database", progress=0.25, bytes_done=2_500_000, bytes_total=10_000_000,
                             heartbeat_at=now)
    html = su_client.get(reverse("dbs_admin:job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "25.0%" in html and "database" in html and "2.4\xa0MB" in html and "9.5\xa0MB" in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "elapsed 30 s" in text and "ETA 1 min 30 s" in text
    assert 'hx-trigger="every 1s"' in html and "<html" not in html
    Job.objects.filter(pk=job.pk).update(stage="rows", bytes_done=1200, bytes_total=4800)
    html = su_client.get(reverse("dbs_admin:job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "1200 of 4800 rows" in re.sub(r"<[^>]+>", "", html)
    Job.objects.filter(pk=job.pk).update(stage="files", bytes_done=3 << 20, bytes_total=24 << 20)
    html = su_client.get(reverse("dbs_admin:job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "3.0\xa0MB of 24.0\xa0MB" in re.sub(r"<[^>]+>", "", html)  # files move by bytes
    Job.objects.filter(pk=job.pk).update(stage="checking blocks", bytes_done=40, bytes_total=90)
    html = su_client.get(reverse("dbs_admin:job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "40 of 90 blocks" in re.sub(r"<[^>]+>", "", html)
    Job.objects.filter(pk=job.pk).update(stage="decrypting", bytes_done=4000, bytes_total=9000)
    text = re.sub(r"<[^>]+>", "", su_client.get(reverse("dbs_admin:job", args=[job.pk]),
                                                HTTP_HX_REQUEST="true").content.decode())
    assert "decrypting" in text and "9000" not in text and "KB" not in text  # rows and bytes mixed: no figures


def test_back_up_now_form_errors_and_recipient_keys(su_client, settings, redis_broker):
    url = reverse("dbs_admin:backup_now")
    base = {"kind": "logical", "target": "local", "label": ""}
    response = su_client.post(url, {**base, "key": "passphrase", "passphrase": "short", "passphrase_again": "short"},
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b"at least 10 characters" in response.content  # swapped by htmx
    response = su_client.post(url, {**base, "key": "passphrase", "passphrase": "long enough one",
                                    "passphrase_again": "long enough two"})
    assert response.status_code == 400 and b"differ" in response.content
    response = su_client.post(url, {**base, "key": "recipients"})
    assert response.status_code == 400 and b"No recipient keys are configured" in response.content
    assert not Job.objects.exists()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": [Identity.generate().recipient]}
    response = su_client.post(url, {**base, "key": "recipients"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("dbs_admin:job", args=[job.pk])
    assert job.params["key"] == "recipients"
    from dbs_admin.models import HandoffSecret

    assert not HandoffSecret.objects.exists()  # nothing secret to hand over


@pytest.mark.django_db(transaction=True)
def test_recipient_sealed_backup_restores_with_an_uploaded_identity(eager, su_client, settings, tmp_path):
    """A scheduled backup (no passphrase slot) is restored through the console with its identity file."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from blog.models import Post
    from dbs_admin.console.restore_views import WRONG_IDENTITY, database_label
    from dbs_admin.jobs.handed_keys import WRONG_IDENTITY_PASSPHRASE
    from dbs_admin.models import HandoffSecret
    from dbs_admin.sealed import Argon2Params, generate_identity

    weak = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
    identity = generate_identity(tmp_path / "id.txt", "identity passphrase", argon2=weak, allow_weak=True)
    stranger = generate_identity(tmp_path / "other.txt", "identity passphrase", argon2=weak, allow_weak=True)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": [identity.recipient]}
    seed(posts=8, images=1, seed=4)
    titles = sorted(Post.objects.values_list("title", flat=True))
    scheduled_backup.apply(kwargs={"target": "local"})
    backup = Job.objects.get(kind=Job.Kind.BACKUP).backup
    Post.objects.all().delete()

    def check(path, passphrase):
        upload = SimpleUploadedFile("id.txt", path.read_bytes(), "text/plain")
        return su_client.post(reverse("dbs_admin:restore_check"),
                              {"backup": backup.pk, "passphrase": passphrase, "identity": upload})

    assert check(tmp_path / "id.txt", "not it at all").context["error"] == WRONG_IDENTITY_PASSPHRASE
    assert check(tmp_path / "other.txt", "identity passphrase").context["error"] == WRONG_IDENTITY
    response = check(tmp_path / "id.txt", "identity passphrase")
    assert response.status_code == 200, response.context.get("error")
    assert b"identity passphrase" not in bytes(HandoffSecret.objects.get().ciphertext)
    assert not list((Path(dbs_settings.PRIVATE_ROOT) / "keys").iterdir())  # the temporary copy is gone
    plan = response.context["form"].initial["plan"]
    su_client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": database_label(),
                                                          "safety_backup": "on"})
    job = Job.objects.get(kind=Job.Kind.RESTORE)
    assert job.state == Job.State.SUCCEEDED, job.message
    assert sorted(Post.objects.values_list("title", flat=True)) == titles
    assert stranger.recipient != identity.recipient
    # The data it replaced (no posts) is sealed to the identity that was used: no passphrase slot.
    from dbs_admin import read_manifest

    safety = Backup.objects.get(label=f"before restore {job.pk}")
    assert [s["type"] for s in safety.key_slots] == ["recipient"]
    assert read_manifest(safety.name, target="local", identity=identity)["counts"]["blog.Post"] == 0


@pytest.mark.django_db(transaction=True)
def test_transport_errors_are_retried_then_fail_with_the_targets_message(eager, superuser, settings, fast_argon2):
    """An unreachable SFTP server: the task retries (a fresh sealed hand-off each time), then fails clearly;
    a misconfigured target fails at once."""
    from celery.signals import task_retry

    from dbs_admin.jobs import handoff
    from dbs_admin.jobs.tasks import BACKUP_PURPOSE, TRANSPORT_RETRIES
    from dbs_admin.models import HandoffSecret
    from tests import services

    sshd = services.ssh_server()
    unreachable = {"kind": "sftp", "host": "127.0.0.1", "port": 1, "username": sshd.username,
                   "key_filename": str(sshd.key_path), "known_hosts": str(sshd.known_hosts), "path": "/backups",
                   "retries": 0, "backoff": 0, "timeout": 2}
    misconfigured = {**unreachable, "known_hosts": "/nonexistent"}
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "away": unreachable, "broken": misconfigured}}
    seed(posts=3, images=0, seed=9)
    retries = []

    def count(sender=None, **kwargs):
        retries.append(kwargs.get("reason"))

    task_retry.connect(count, weak=False)
    try:
        for target, expected_retries in (("away", TRANSPORT_RETRIES), ("broken", 0)):
            retries.clear()
            job = Job.objects.create(kind=Job.Kind.BACKUP, created_by=superuser,
                                     params={"kind": "logical", "target": target, "label": ""})
            ref = handoff.put("a passphrase for the retries", purpose=BACKUP_PURPOSE)
            run_backup.apply(kwargs={"job_id": job.pk, "secret_ref": ref})
            job.refresh_from_db()
            assert job.state == Job.State.FAILED, job.message
            assert f"target {target!r}" in job.message
            assert len(retries) == expected_retries, (target, retries)
            assert not HandoffSecret.objects.exists()  # each retry's sealed hand-off was consumed
    finally:
        task_retry.disconnect(count)


def test_polling_a_job_whose_worker_died_shows_it_lost(su_client, settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 30}
    job = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, started_at=timezone.now(),
                             heartbeat_at=timezone.now() - timedelta(minutes=2), worker="gone@host")
    html = su_client.get(reverse("dbs_admin:job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-state="lost"' in html and "Failed (worker lost)" in html and "every 1s" not in html


@pytest.mark.django_db(transaction=True)
def test_a_job_no_worker_started_is_failed_and_its_late_message_runs_nothing(eager, su_client, superuser, settings):
    """A lost broker message must not leave "Queued" on screen forever, nor run hours later by surprise."""
    from dbs_admin.jobs import handoff
    from dbs_admin.jobs.tasks import BACKUP_PURPOSE
    from dbs_admin.models import HandoffSecret

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_QUEUE_TIMEOUT": 600}
    seed(posts=2, images=0, seed=3)
    params = {"kind": "logical", "target": "local", "label": ""}
    stale = Job.objects.create(kind=Job.Kind.BACKUP, created_by=superuser, params=params,
                               created_at=timezone.now() - timedelta(minutes=11))
    waiting = Job.objects.create(kind=Job.Kind.BACKUP, created_by=superuser, params=params,
                                 created_at=timezone.now() - timedelta(minutes=9))

    html = su_client.get(reverse("dbs_admin:job", args=[stale.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-state="failed"' in html and "Never started" in html and "within 10 min" in html
    waiting.refresh_from_db()
    assert waiting.state == Job.State.QUEUED  # younger than the timeout: still honestly waiting

    ref = handoff.put("a passphrase", purpose=BACKUP_PURPOSE)
    run_backup.apply(kwargs={"job_id": stale.pk, "secret_ref": ref})  # the lost message turns up after all
    stale.refresh_from_db()
    assert stale.state == Job.State.FAILED and "Never started" in stale.message
    assert not Backup.objects.exists() and get_target("local").list() == []
    assert not HandoffSecret.objects.exists()  # its sealed passphrase was discarded unread


@pytest.mark.django_db
def test_a_job_waiting_behind_a_long_one_is_not_failed_until_the_queue_stops(settings):
    """One worker, a backup of many hours: the jobs queued behind it are waiting, not lost."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_QUEUE_TIMEOUT": 600, "JOB_HEARTBEAT_TIMEOUT": 60}
    now = timezone.now()
    long_one = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, created_at=now - timedelta(hours=8),
                                  started_at=now - timedelta(hours=8), heartbeat_at=now - timedelta(seconds=5))
    behind = Job.objects.create(kind=Job.Kind.RESTORE, created_at=now - timedelta(hours=7))

    assert reaper.reap_lost_jobs() == []
    assert Job.objects.get(pk=behind.pk).state == Job.State.QUEUED

    # The long one has just ended: the worker is about to take the next message.
    Job.objects.filter(pk=long_one.pk).update(state=Job.State.SUCCEEDED, finished_at=now - timedelta(seconds=2))
    assert reaper.reap_lost_jobs() == []
    # Jobs that ended without a worker (never started, or cancelled while queued) show no life.
    Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.CANCELLED, finished_at=now)

    # A minute later nothing has taken it: its message is lost, and it says so.
    Job.objects.filter(pk=long_one.pk).update(finished_at=now - timedelta(seconds=61))
    assert reaper.reap_lost_jobs() == [behind.pk]
    behind.refresh_from_db()
    assert behind.state == Job.State.FAILED and "Never started" in behind.message


@pytest.mark.django_db
def test_a_worker_gone_with_its_job_does_not_keep_the_queue_alive(settings):
    """The reaper's LOST verdict is no sign of life: the job queued behind a dead worker is failed at once."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_QUEUE_TIMEOUT": 600, "JOB_HEARTBEAT_TIMEOUT": 60}
    now = timezone.now()
    dead = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, started_at=now - timedelta(hours=1),
                              heartbeat_at=now - timedelta(minutes=30), worker="gone@host")
    behind = Job.objects.create(kind=Job.Kind.BACKUP, created_at=now - timedelta(minutes=20))
    assert sorted(reaper.reap_lost_jobs()) == sorted([dead.pk, behind.pk])
    assert Job.objects.get(pk=dead.pk).state == Job.State.LOST
    assert Job.objects.get(pk=behind.pk).state == Job.State.FAILED


def _restore_through_the_console(client, backup: Backup, **confirm) -> Job:
    from dbs_admin.console.restore_views import database_label

    step1 = client.post(reverse("dbs_admin:restore_check"), {"backup": backup.pk, "passphrase": PASSPHRASE})
    assert step1.status_code == 200, step1.context.get("error")
    plan = step1.context["form"].initial["plan"]
    client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": database_label(), **confirm})
    return Job.objects.filter(kind=Job.Kind.RESTORE).latest("pk")


@pytest.mark.django_db(transaction=True)
def test_a_restore_first_backs_up_what_it_replaces_and_that_backup_undoes_it(eager, su_client):
    from blog.models import Post
    from dbs_admin import create_backup, restore_backup

    seed(posts=5, images=1, seed=9)
    old = Backup.objects.get(name=create_backup(target="local", passphrase=PASSPHRASE).name)
    Post.objects.create(title="Written after the backup", slug="written-after-the-backup")
    page = su_client.post(reverse("dbs_admin:restore_check"), {"backup": old.pk, "passphrase": PASSPHRASE})
    assert 'name="safety_backup"' in page.content.decode() and "checked" in page.content.decode()

    job = _restore_through_the_console(su_client, old, safety_backup="on")
    assert job.state == Job.State.SUCCEEDED, job.message
    assert not Post.objects.filter(slug="written-after-the-backup").exists()  # the restore replaced it
    safety = Backup.objects.get(label=f"before restore {job.pk}")
    assert safety.name in job.message and "same key" in job.message
    assert safety.copies.get().target == "local" and safety.status == Backup.Status.OK

    restore_backup(safety.name, target="local", passphrase=PASSPHRASE)  # undo the restore
    assert Post.objects.filter(slug="written-after-the-backup").exists() and Post.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_a_restore_whose_safety_backup_fails_restores_nothing(eager, su_client, settings, tmp_path):
    from blog.models import Post
    from dbs_admin import create_backup

    seed(posts=3, images=0, seed=10)
    old = Backup.objects.get(name=create_backup(target="local", passphrase=PASSPHRASE).name)
    Post.objects.create(title="Written after the backup", slug="written-after-the-backup")
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"a file where the target's folder should be")
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DEFAULT_TARGET": "blocked", "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "blocked": {"kind": "local", "path": str(blocked)}}}

    job = _restore_through_the_console(su_client, old, safety_backup="on")
    assert job.state == Job.State.FAILED and job.message.startswith("Nothing was restored"), job.message
    assert Post.objects.filter(slug="written-after-the-backup").exists() and Post.objects.count() == 4
    assert Backup.objects.count() == 1 and not TargetLock.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_restore_without_the_safety_backup_makes_none(eager, su_client):
    seed(posts=2, images=0, seed=12)
    from dbs_admin import create_backup

    old = Backup.objects.get(name=create_backup(target="local", passphrase=PASSPHRASE).name)
    job = _restore_through_the_console(su_client, old)
    assert job.state == Job.State.SUCCEEDED, job.message
    assert list(Backup.objects.values_list("pk", flat=True)) == [old.pk] and "replaced" not in job.message
