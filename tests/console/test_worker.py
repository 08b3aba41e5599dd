"""The console with a real Celery worker on Redis: backup, restore, no passphrase anywhere, lost workers, locks."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, connections
from django.urls import reverse

from blog.models import Post
from blog.seeding import seed
from dbs_admin.conf import dbs_settings
from dbs_admin.console.restore_views import database_label
from dbs_admin.jobs import locks
from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.models import Backup, Job, TargetLock

from .conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def job_state(pk: int) -> str:
    return Job.objects.get(pk=pk).state


def wait_job(pk: int, states=(Job.State.SUCCEEDED,), timeout: float = 90.0, worker=None) -> Job:
    finished = {Job.State.SUCCEEDED, Job.State.FAILED, Job.State.CANCELLED, Job.State.LOST}
    wait_for(lambda: job_state(pk) in finished | set(states), timeout, 0.2, f"job {pk} to finish", worker)
    job = Job.objects.get(pk=pk)
    assert job.state in states, f"job {pk} ended {job.state}: {job.message}"
    return job


def redis_dump(url: str) -> bytes:
    """Every key and value of our Redis database, whatever the type."""
    r = redis.Redis.from_url(url)
    out = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        out.append(key)
        if kind == "string":
            out.append(r.get(key) or b"")
        elif kind == "list":
            out.extend(r.lrange(key, 0, -1))
        elif kind == "hash":
            for k, v in r.hgetall(key).items():
                out += [k, v]
        elif kind == "set":
            out.extend(r.smembers(key))
        elif kind == "zset":
            out.extend(r.zrange(key, 0, -1))
    return b"\n".join(out)


def database_dump() -> bytes:
    """The text of every row of every table of the test database."""
    out = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    out.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(out)


# Run in a child process: SQLite locks are POSIX advisory locks, and closing *any* descriptor of a database
# file (or its -wal/-shm) drops every lock this process holds on it. Reading the live test database here
# would let the worker delete a WAL this process still uses, leaving the next test with a stale view.
_SCAN = """
import os, sys
needle = sys.stdin.buffer.read()
for root in sys.argv[1:]:
    paths = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    for path in paths:
        try:
            with open(path, "rb") as f:
                if needle in f.read():
                    print(path)
        except OSError:
            pass
"""


def files_containing(needle: bytes, *roots: Path) -> list[str]:
    """Files under ``roots`` (folders or files) whose bytes contain ``needle``, read by a child process."""
    result = subprocess.run([sys.executable, "-c", _SCAN, *map(str, roots)], input=needle,
                            capture_output=True, check=True)
    return result.stdout.decode().splitlines()


def test_backup_and_restore_through_the_console_leak_no_passphrase(su_client, worker_factory, redis_broker,
                                                                   tmp_path):
    seed(posts=25, images=3, seed=7)
    titles = sorted(Post.objects.values_list("title", flat=True))
    passphrase = "canary-" + secrets.token_hex(12)

    # Back up now, through the HTMX form; no worker yet, so the message waits in Redis.
    response = su_client.post(reverse("dbs_admin:backup_now"), {
        "kind": "logical", "target": "local", "label": "console test", "key": "passphrase",
        "passphrase": passphrase, "passphrase_again": passphrase,
    }, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b"dbs-bar" in response.content
    job = Job.objects.get(kind=Job.Kind.BACKUP)
    queued = redis_dump(redis_broker)
    assert b"dbs_admin.backup" in queued  # the task message is really in the broker...
    assert passphrase.encode() not in queued  # ...without the passphrase

    worker = worker_factory()
    job = wait_job(job.pk, worker=worker)
    assert job.backup is not None and job.progress == 1.0 and job.bytes_done > 0
    backup = Backup.objects.get(pk=job.backup_id)
    assert backup.copies.get().target == "local"

    # Leaving and returning shows the finished job; the progress partial shows 100 %.
    partial = su_client.get(reverse("dbs_admin:job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "100.0%" in partial and backup.name in partial and "every 1s" not in partial

    # Break the data, then restore it through the two-step form.
    Post.objects.filter(pk__in=list(Post.objects.values_list("pk", flat=True)[:10])).delete()
    assert Post.objects.count() == 15
    step1 = su_client.post(reverse("dbs_admin:restore_check"), {"backup": backup.pk, "passphrase": passphrase})
    assert step1.status_code == 200, step1.content.decode()[-2000:]
    page = step1.content.decode()
    assert "Migrations match" in page and "blog.Post" in page
    plan = step1.context["form"].initial["plan"]
    assert passphrase not in plan
    refused = su_client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": "not-the-name"})
    assert refused.status_code == 400 and not Job.objects.filter(kind=Job.Kind.RESTORE).exists()
    response = su_client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": database_label()})
    assert response.status_code == 302
    restore_job = wait_job(Job.objects.get(kind=Job.Kind.RESTORE).pk)
    assert sorted(Post.objects.values_list("title", flat=True)) == titles
    assert "Restored" in restore_job.message

    # Nowhere in the clear: broker, database, worker log, files of the site and the job.
    assert passphrase.encode() not in redis_dump(redis_broker)
    assert passphrase.encode() not in database_dump()
    log = worker.log()
    assert "dbs_admin.backup" in log and "succeeded" in log  # the log is real and was captured
    assert passphrase not in log
    # tmp_path holds the worker's var folder (targets, private root, media, history) and its log.
    assert Path(dbs_settings.PRIVATE_ROOT).is_relative_to(tmp_path)
    assert Path(django_settings.MEDIA_ROOT).is_relative_to(tmp_path)
    assert files_containing(passphrase.encode(), tmp_path) == []
    if connection.vendor == "sqlite":  # the database file itself, free pages included
        db_file = Path(connection.settings_dict["NAME"])
        assert files_containing(passphrase.encode(), *db_file.parent.glob(db_file.name + "*")) == []


def test_killed_worker_leaves_a_lost_job_and_no_partial_files(worker_factory, settings):
    from .worker_tasks import slow_job

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 5}
    partial = Path(dbs_settings.PRIVATE_ROOT) / "jobs" / secrets.token_hex(4) / "half.dbs.tmp-1"
    job = Job.objects.create(kind=Job.Kind.BACKUP, params={"target": "local"})
    worker = worker_factory(include="tests.console.worker_tasks")
    slow_job.apply_async(args=[job.pk, str(partial)])
    wait_for(lambda: job_state(job.pk) == Job.State.RUNNING and partial.exists(), 60, 0.1, "the job to run", worker)
    time.sleep(6)  # longer than the timeout: only the heartbeat thread keeps it alive
    assert reap_lost_jobs() == [] and job_state(job.pk) == Job.State.RUNNING
    worker.kill9()
    lost = wait_for(lambda: reap_lost_jobs(), 20, 0.5, "the reaper to notice")
    assert lost == [job.pk]
    job.refresh_from_db()
    assert job.state == Job.State.LOST and job.get_state_display() == "Failed (worker lost)"
    assert "worker lost" in job.message and job.partial_files == []
    assert not partial.exists()


def test_killed_worker_mid_backup_leaves_no_staging_folder_and_frees_the_target(su_client, worker_factory,
                                                                               settings):
    """The real backup task: its private staging folder and any temporary file on the target go."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 5}
    seed(posts=6000, images=5, seed=11)
    before = set(Path(dbs_settings.PRIVATE_ROOT).glob("create-*"))
    worker = worker_factory()
    su_client.post(reverse("dbs_admin:backup_now"), {
        "kind": "logical", "target": "local", "label": "killed", "key": "passphrase",
        "passphrase": "a passphrase long enough", "passphrase_again": "a passphrase long enough",
    })
    job = Job.objects.get(kind=Job.Kind.BACKUP)
    staging = wait_for(lambda: [p for p in Job.objects.get(pk=job.pk).partial_files if "/create-" in p], 60, 0.05,
                       "the staging folder to be recorded", worker)
    assert Job.objects.get(pk=job.pk).state == Job.State.RUNNING and Path(staging[0]).is_dir()
    worker.kill9()
    assert wait_for(lambda: reap_lost_jobs(), 20, 0.5, "the reaper") == [job.pk]
    job.refresh_from_db()
    assert job.state == Job.State.LOST and job.partial_files == []
    assert set(Path(dbs_settings.PRIVATE_ROOT).glob("create-*")) == before
    folder = Path(dbs_settings.TARGETS["local"]["path"])
    assert not [p for p in folder.glob("*killed*")] and not list(folder.glob(".*.part"))
    assert not Backup.objects.exists() and not TargetLock.objects.exists()


def test_killed_worker_during_the_safety_backup_of_a_restore_leaves_nothing_and_restores_nothing(
        su_client, worker_factory, settings):
    """The backup a restore takes first is watched like any backup: its staging folder and locks go."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 5}
    from dbs_admin import create_backup

    seed(posts=6000, images=5, seed=12)  # a backup long enough to interrupt
    old = Backup.objects.get(name=create_backup(target="local", passphrase="a passphrase long enough").name)
    Post.objects.create(title="Written after the backup", slug="written-after-the-backup")
    titles = sorted(Post.objects.values_list("title", flat=True))
    before = set(Path(dbs_settings.PRIVATE_ROOT).glob("create-*"))
    step1 = su_client.post(reverse("dbs_admin:restore_check"), {"backup": old.pk,
                                                                 "passphrase": "a passphrase long enough"})
    plan = step1.context["form"].initial["plan"]
    worker = worker_factory()
    su_client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": database_label(),
                                                          "safety_backup": "on"})
    job = Job.objects.get(kind=Job.Kind.RESTORE)
    wait_for(lambda: [p for p in Job.objects.get(pk=job.pk).partial_files if "/create-" in p], 60, 0.05,
             "the safety backup's staging folder to be recorded", worker)
    worker.kill9()
    assert wait_for(lambda: reap_lost_jobs(), 20, 0.5, "the reaper") == [job.pk]
    assert set(Path(dbs_settings.PRIVATE_ROOT).glob("create-*")) == before
    folder = Path(dbs_settings.TARGETS["local"]["path"])
    assert [p.name for p in folder.glob("*.dbs")] == [old.name] and not list(folder.glob(".*.part"))
    assert not TargetLock.objects.exists() and Backup.objects.count() == 1
    assert sorted(Post.objects.values_list("title", flat=True)) == titles  # nothing was restored


def test_one_backup_per_target_however_many_workers(su_client, superuser, worker_factory):
    """Two backups of the same target queued at once on two worker processes never overlap."""
    worker_factory(pool="prefork", concurrency=2)
    jobs = []
    for i in range(2):
        su_client.post(reverse("dbs_admin:backup_now"), {
            "kind": "logical", "target": "local", "label": f"race {i}", "key": "passphrase",
            "passphrase": "a passphrase long enough", "passphrase_again": "a passphrase long enough",
        })
    jobs = list(Job.objects.filter(kind=Job.Kind.BACKUP).order_by("pk"))
    assert len(jobs) == 2
    seen_waiting = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {j.pk: Job.objects.get(pk=j.pk) for j in jobs}
        running = [j for j in states.values() if j.state == Job.State.RUNNING]
        assert len(running) <= 1, "two backups of one target ran at once"
        seen_waiting |= any("busy with #" in j.message for j in states.values())
        if all(j.finished for j in states.values()):
            break
        time.sleep(0.05)
    a, b = (Job.objects.get(pk=j.pk) for j in jobs)
    assert a.state == b.state == Job.State.SUCCEEDED, (a.message, b.message)
    first, second = sorted([a, b], key=lambda j: j.started_at)
    assert first.finished_at <= second.started_at
    assert seen_waiting
    wait_for(lambda: not TargetLock.objects.exists(), 10, 0.1, "the lock to be released")  # just after the state


def test_busy_target_makes_a_scheduled_run_skip(worker_factory):
    """A duplicated beat: the second scheduled backup finds the target locked and is refused, not run twice."""
    from dbs_admin.jobs.tasks import run_backup

    holder = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, params={"target": "local"})
    assert locks.acquire("local", holder) is None
    job = Job.objects.create(kind=Job.Kind.BACKUP, params={"target": "local", "kind": "logical"})
    worker = worker_factory()
    run_backup.apply_async(kwargs={"job_id": job.pk, "on_busy": "skip"})
    job = wait_job(job.pk, states=(Job.State.CANCELLED,), timeout=60, worker=worker)
    assert f"busy with backup job #{holder.pk}" in job.message and "skipped" in job.message
    assert not Backup.objects.exists()


def test_lock_is_taken_by_exactly_one_of_many_racers():
    """Eight threads (eight connections) race for one target: one wins, seven see the winner."""
    jobs = [Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING) for _ in range(8)]
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(jobs))

    def race(job):
        try:
            barrier.wait()
            results[job.pk] = locks.acquire("race-target", job)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [pk for pk, holder in results.items() if holder is None]
    assert len(winners) == 1
    assert all(holder.pk == winners[0] for pk, holder in results.items() if holder is not None)
    # The winner finishing frees the target for the next one.
    Job.objects.filter(pk=winners[0]).update(state=Job.State.SUCCEEDED)
    other = next(j for j in jobs if j.pk != winners[0])
    assert locks.acquire("race-target", other) is None


def test_a_failed_job_fails_its_celery_task_where_monitoring_looks(worker_factory, superuser, settings):
    """Flower, Sentry's Celery integration and `celery events` see task events: a job that fails records its
    state first, then its task fails too (task-failed, with the job's one-line message); a job that succeeds
    is task-succeeded."""
    from dbs_admin.jobs import launch
    from demo_site.celery import app

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": []}
    worker = worker_factory(events=True, name="events")
    seen: dict[str, dict] = {}
    listening = threading.Event()

    def listen():
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={
                "task-failed": lambda e: seen.setdefault(e["uuid"], e),
                "task-succeeded": lambda e: seen.setdefault(e["uuid"], e),
                "worker-online": lambda e: None,
            })
            listen.receiver = receiver
            listening.set()
            receiver.capture(limit=None, timeout=None, wakeup=False)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert listening.wait(10)
    try:
        failing = launch.queue_backup(user=superuser, kind="logical", target="local", label="", passphrase=None)
        failing = wait_job(failing.pk, states=(Job.State.FAILED,), worker=worker)  # recorded first
        event = wait_for(lambda: seen.get(failing.celery_task_id), 30, 0.2, "the task-failed event", worker)
        assert event["type"] == "task-failed" and f"job #{failing.pk} failed" in event["exception"]
        assert "recipient" in failing.message and "JobFailed" in event["exception"]
        working = launch.queue_backup(user=superuser, kind="logical", target="local", label="",
                                      passphrase="a passphrase for monitoring")
        working = wait_job(working.pk, worker=worker)
        event = wait_for(lambda: seen.get(working.celery_task_id), 30, 0.2, "the task-succeeded event", worker)
        assert event["type"] == "task-succeeded"
        assert "a passphrase for monitoring" not in worker.log()
    finally:
        listen.receiver.should_stop = True
        thread.join(5)
