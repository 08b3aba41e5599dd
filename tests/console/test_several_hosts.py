"""Several hosts on one machine: real workers with their own host names and var folders, two beats, one
database and one broker, as production runs them (issue #18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from blog.seeding import seed
from dbs_admin.drills.identity import create_drill_identity
from dbs_admin.jobs import locks
from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.models import Backup, BackupCopy, DrillReport, Job, ScheduleTick, WorkerHost
from tests import services

from .conftest import start_worker, stop_worker, wait_for
from .test_worker import job_state, wait_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PASSPHRASE = "a passphrase long enough"


def host_var(tmp_path: Path, host: str) -> Path:
    """A host's own var folder, with the unattended keys its worker loads (as `make demo` makes them)."""
    var = tmp_path / host
    keys = var / "keys"
    if not keys.exists():
        var.mkdir(parents=True)
        create_drill_identity(keys, "the drill identity's passphrase")
        (keys / "drill.env").write_text("DBS_DRILL_IDENTITY_PASSPHRASE=the drill identity's passphrase\n")
    return var


@pytest.fixture
def hosts(redis_broker, tmp_path):
    """Start workers that stand for hosts: ``hosts("host-a")`` → a Worker with its own name and var folder."""
    started = []

    def start(host: str, **kwargs):
        w = start_worker(redis_broker, tmp_path / f"{host}-{len(started)}.log", var=host_var(tmp_path, host),
                         name=host, env={"DBS_HOST_NAME": host, "DBS_DEMO_KEYS": "1", **kwargs.pop("env", {})},
                         **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        stop_worker(w)


def start_beat(url: str, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(REDIS_URL=url, DATABASE_URL=services.shared_database_url())
    cmd = [sys.executable, "-m", "celery", "-A", "demo_site", "beat", "--loglevel", "INFO", "--max-interval", "1",
           "-S", "django_celery_beat.schedulers:DatabaseScheduler"]
    return subprocess.Popen(cmd, cwd=services.ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                            preexec_fn=os.setsid)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(5)


def back_up_now(client, label: str = "") -> Job:
    response = client.post(reverse("dbs_admin:backup_now"), {
        "kind": "logical", "target": "local", "label": label, "key": "passphrase",
        "passphrase": PASSPHRASE, "passphrase_again": PASSPHRASE,
    })
    assert response.status_code in (200, 302), response.content[:300]
    return Job.objects.filter(kind=Job.Kind.BACKUP).latest("pk")


def test_two_beats_and_two_workers_make_exactly_one_backup_per_tick(redis_broker, hosts, tmp_path):
    """Two beats fire every tick; the first message claims it, the other makes no Job and logs one line."""
    seed(posts=3, images=0, seed=5)
    every, _ = IntervalSchedule.objects.get_or_create(every=4, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="several hosts: every 4 s", task="dbs_admin.scheduled_backup",
                                       interval=every, kwargs=json.dumps({"target": "local"}))
    workers = [hosts("host-a"), hosts("host-b")]
    beats = [start_beat(redis_broker, tmp_path / f"beat-{n}.log") for n in range(2)]
    sending = f"Sending due task {task.name}"

    def sent_by_each() -> list[int]:
        return [(tmp_path / f"beat-{n}.log").read_text().count(sending) for n in range(2)]

    try:
        wait_for(lambda: min(sent_by_each()) >= 1, 120, 0.5, "both beats to fire", workers[0])
        both_up = ScheduleTick.objects.filter(schedule=task.name).count()
        wait_for(lambda: ScheduleTick.objects.filter(schedule=task.name).count() >= both_up + 3, 90, 0.5,
                 "three more ticks", workers[0])
    finally:
        for beat in beats:
            stop(beat)
    time.sleep(2)  # a message beat sent just before it stopped is claimed (or not) by now
    ticks = list(ScheduleTick.objects.filter(schedule=task.name))
    jobs = [j for j in Job.objects.filter(kind=Job.Kind.BACKUP) if j.params.get("scheduled")]
    # ``both_up`` may be 0: both beats had sent their first tick, not yet claimed. Three ticks claimed after it
    # is what was waited for; each has its own due time.
    assert len({t.due_at for t in ticks}) == len(ticks) >= both_up + 3
    assert sorted(t.job_id for t in ticks) == sorted(j.pk for j in jobs)  # one Job per tick, none without one
    for job in jobs:
        wait_job(job.pk, states=(Job.State.SUCCEEDED, Job.State.CANCELLED), worker=workers[0])
    assert any(Job.objects.get(pk=j.pk).state == Job.State.SUCCEEDED for j in jobs)
    sent = sent_by_each()
    assert min(sent) >= 2, sent  # both beats really fired ticks (under load one may miss a window)
    duplicates = sum(w.log().count("was already claimed; this duplicate does nothing") for w in workers)
    assert duplicates >= sum(sent) - len(ticks) - 2  # every extra message was turned away (two may be in flight)
    assert duplicates >= 1


def test_a_job_waits_for_a_busy_target_as_long_as_the_holder_lives_then_runs(su_client, worker_factory,
                                                                             worker_var):
    """A job behind a busy target waits 60 s (the old code gave up after 15 s and stayed Queued for ever)."""
    seed(posts=3, images=0, seed=6)
    now = timezone.now()
    holder = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, started_at=now, heartbeat_at=now,
                                worker="a worker elsewhere")
    assert locks.acquire("local", holder) is None
    worker = worker_factory()
    job = back_up_now(su_client, "behind a busy target")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        Job.objects.filter(pk=holder.pk).update(heartbeat_at=timezone.now())  # the holder lives
        time.sleep(2)
        job.refresh_from_db()
        assert job.state == Job.State.QUEUED, (job.state, job.message, worker.log()[-3000:])
    assert job.message == f"Waiting for 'local', busy with #{holder.pk} (backup)."
    Job.objects.filter(pk=holder.pk).update(state=Job.State.SUCCEEDED, finished_at=timezone.now())
    locks.release("local", holder)
    freed = time.monotonic()
    wait_job(job.pk, timeout=60, worker=worker)
    assert time.monotonic() - freed < 20  # it started within seconds of the holder ending
    assert "MaxRetriesExceeded" not in worker.log()


def test_a_killed_worker_strands_no_queued_job(su_client, hosts, redis_broker, settings, tmp_path):
    """Prefetch 1: a busy worker holds no queued message, so killing it strands none; a message lost anyway
    (a broker restarted without its data) is sent again by the reaper, and failed only after a second loss."""
    from .worker_tasks import slow_job

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 5, "JOB_QUEUE_TIMEOUT": 3}
    seed(posts=3, images=0, seed=7)
    a = hosts("host-a", include="tests.console.worker_tasks")
    slow = Job.objects.create(kind=Job.Kind.BACKUP, params={"target": "elsewhere"})
    slow_job.apply_async(args=[slow.pk, str(tmp_path / "host-a" / "dbs_private" / "x.part"), 300])
    wait_for(lambda: job_state(slow.pk) == Job.State.RUNNING, 60, 0.2, "the slow job to run", a)
    queued = [back_up_now(su_client, f"behind {n}") for n in range(2)]
    broker = redis.Redis.from_url(redis_broker)
    time.sleep(2)
    assert broker.llen(services.RUN_QUEUE) == 2  # not taken by the busy worker: still in the broker
    a.kill9()
    b = hosts("host-b")
    for job in queued:
        wait_job(job.pk, timeout=60, worker=b)
    assert wait_for(lambda: reap_lost_jobs(), 20, 0.5, "the reaper") == [slow.pk]

    # A message lost with the broker's data: the reaper sends the job again, and b runs it.
    stop_worker(b)
    lost = back_up_now(su_client, "lost message")
    assert broker.delete(services.RUN_QUEUE) == 1
    time.sleep(4)
    assert reap_lost_jobs() == [] and Job.objects.get(pk=lost.pk).resends == 1
    b = hosts("host-b")
    done = wait_job(lost.pk, timeout=60, worker=b)
    assert done.worker.startswith("host-b")

    # Lost twice, with no worker at all: failed, saying so.
    stop_worker(b)
    twice = back_up_now(su_client, "lost twice")
    broker.delete(services.RUN_QUEUE)
    time.sleep(4)
    assert reap_lost_jobs() == []
    broker.delete(services.RUN_QUEUE)
    time.sleep(4)
    assert reap_lost_jobs() == [twice.pk]
    twice.refresh_from_db()
    assert twice.state == Job.State.FAILED and "Never started" in twice.message and "(sent 2 times)" in twice.message


def test_a_copy_on_one_hosts_disk_is_refused_elsewhere_in_one_line(su_client, hosts, settings, tmp_path):
    """Workers register their hosts; a local copy records its host; the web host says where it lives."""
    seed(posts=3, images=0, seed=8)
    b = hosts("host-b")
    wait_for(lambda: WorkerHost.objects.filter(name="host-b").exists(), 60, 0.2, "host-b to register", b)
    a = hosts("host-a")
    wait_for(lambda: WorkerHost.objects.filter(name="host-a").exists(), 60, 0.2, "host-a to register", a)
    job = wait_job(back_up_now(su_client, "on one host").pk, worker=b)
    copy = BackupCopy.objects.get(backup=job.backup, target="local")
    assert copy.host in {"host-a", "host-b"} and job.worker.startswith(f"{copy.host}-")  # the host that ran it
    assert (tmp_path / copy.host / "dbs_backups" / job.backup.name).is_file()

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HOST_NAME": "web-host"}  # this process is the web host
    response = su_client.get(reverse("dbs_admin:download_link", args=[job.backup.pk]), follow=True)
    assert response.status_code == 404
    text = response.content.decode()
    assert text.count("\n") == 0 and f"on host {copy.host!r}'s own disk" in text and "shared or remote" in text

    from django.core.management import call_command

    from dbs_admin.drills.system_checks import per_host_disks_check

    warnings = per_host_disks_check()
    assert [w.id for w in warnings] == ["dbs_admin.W004", "dbs_admin.W004"]  # the target and HISTORY_ROOT
    assert "host-a, host-b each write target 'local' to their own disk" in warnings[0].msg
    assert "HISTORY_ROOT" in warnings[1].msg
    dashboard = su_client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    assert "each write target &#x27;local&#x27; to their own disk" in dashboard

    with pytest.raises(SystemExit):
        call_command("dbs_drill", job.backup.name, "--target", "local", "--passphrase-file",
                     str(_passphrase_file(tmp_path)), "--no-mail")
    report = DrillReport.objects.latest("pk")
    assert f"on host {copy.host!r}'s own disk" in (report.error + "".join(c.detail for c in report.checks.all()))


def _passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE)
    path.chmod(0o600)
    return path


def test_folders_all_hosts_mount_raise_no_warning(settings, tmp_path):
    """The markers tell a shared folder from per-host folders of the same name, whatever the paths."""
    from dbs_admin.backups.host_disks import per_host_warnings, register_this_host

    shared = tmp_path / "nfs"
    for host in ("host-a", "host-b"):
        settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HOST_NAME": host, "HISTORY_ROOT": str(shared / "history"),
                              "TARGETS": {"local": {"kind": "local", "path": str(shared / "backups")}}}
        register_this_host()
    assert per_host_warnings() == []
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HOST_NAME": "host-c",
                          "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "c" / "backups")}}}
    register_this_host()
    (warning,) = per_host_warnings()
    assert "host-a, host-b, host-c each write target 'local'" in warning
    assert "host(s) host-a, host-b not seen" in warning
    assert Backup.objects.count() == 0


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own (it is stopped and started again; the shared one never is)."""
    import shutil

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    services.require("redis-server", Path(binary).exists(), "apt-get install redis-server")
    port = services.free_port()

    def start() -> subprocess.Popen:
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp_path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: services.port_open("127.0.0.1", port), 20, 0.1, "redis-server to listen")
        return process

    state = {"process": start()}

    class Server:
        url = f"redis://127.0.0.1:{port}/0"

        def stop(self) -> None:
            state["process"].terminate()
            state["process"].wait(10)

        def start(self) -> None:
            state["process"] = start()

    yield Server()
    if state["process"].poll() is None:
        state["process"].kill()
        state["process"].wait(10)


def test_a_worker_survives_the_broker_going_away_mid_job(su_client, own_redis, tmp_path, settings):
    """Redis stopped for 30 s under a running backup and started again: the backup ends, *Back up now* says the
    broker is down in one sentence and queues nothing, and afterwards the same worker takes new jobs."""
    seed(posts=4000, images=2, seed=9)
    with services.celery_on_redis(0, url=own_redis.url):
        worker = start_worker(own_redis.url, tmp_path / "worker.log", var=host_var(tmp_path, "host-a"),
                              name="host-a", env={"DBS_HOST_NAME": "host-a"}, plain=True)
        try:
            job = back_up_now(su_client, "while the broker goes away")
            wait_for(lambda: job_state(job.pk) == Job.State.RUNNING, 60, 0.05, "the backup to start", worker)
            own_redis.stop()
            jobs_before = Job.objects.count()
            down = su_client.post(reverse("dbs_admin:backup_now"), {
                "kind": "logical", "target": "local", "label": "refused", "key": "passphrase",
                "passphrase": PASSPHRASE, "passphrase_again": PASSPHRASE})
            assert down.status_code == 503 and Job.objects.count() == jobs_before
            assert "cannot be reached, so nothing was queued" in down.content.decode()
            wait_job(job.pk, timeout=120, worker=worker)  # the job needs the database, not the broker
            time.sleep(30)
            assert worker.process.poll() is None, worker.log()[-4000:]
            own_redis.start()
            after = back_up_now(su_client, "after the broker came back")
            wait_job(after.pk, timeout=120, worker=worker)
            assert worker.process.poll() is None
            assert "Unrecoverable error" not in worker.log()
        finally:
            stop_worker(worker)


def test_a_database_restart_mid_job_fails_that_job_cleanly_and_the_worker_goes_on(su_client, worker_factory):
    """The worker's connections are cut mid-backup (what a PostgreSQL or MariaDB restart does to them): that job
    fails with one sentence, nothing of it is left, and the same worker runs the next job."""
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connections to cut: the PostgreSQL and MariaDB runs of the suite cover it")
    seed(posts=20000, images=2, seed=10)  # a backup of a few seconds: 6,000 posts took 0.7 s, over before the cut
    worker = worker_factory()
    job = back_up_now(su_client, "cut off")
    wait_for(lambda: job_state(job.pk) == Job.State.RUNNING and Job.objects.get(pk=job.pk).bytes_done > 0,
             60, 0.02, "the backup to be under way", worker)
    cut_other_connections(connection)
    failed = wait_job(job.pk, states=(Job.State.FAILED,), timeout=90, worker=worker)
    assert "database" in failed.message.lower() and "Internal error" not in failed.message, failed.message
    assert not Backup.objects.exists() and not locks_held()
    assert worker.process.poll() is None
    wait_job(back_up_now(su_client, "after the cut").pk, timeout=120, worker=worker)


def cut_other_connections(connection) -> None:
    """End every other session on this test database, as the server does to them when it restarts."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            return
        cursor.execute("SELECT id FROM information_schema.PROCESSLIST WHERE db = DATABASE() AND id <> CONNECTION_ID()")
        ids = [row[0] for row in cursor.fetchall()]
        assert ids, "the worker has no connection to this database to cut"
        for session in ids:
            try:
                cursor.execute(f"KILL CONNECTION {int(session)}")
            except Exception as exc:  # noqa: BLE001 - a session that ended by itself meanwhile
                if "Unknown thread" not in str(exc):
                    raise


def locks_held() -> bool:
    from dbs_admin.models import TargetLock

    return TargetLock.objects.exists()
