"""Fixtures of the console tests: logged-in clients, a Redis broker of our own, a real Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client

from tests import services

REDIS_DB = 13  # the console's own Redis database number (team convention)
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Test users' passwords are hashed cheaply; these tests are about the console, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def eager():
    """Tasks run in-process where they are sent (tests about what a task does, not about the worker)."""
    from demo_site.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def private_target(settings, tmp_path):
    """An empty local target per test, so retention and cleanup see only this test's files."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "t")}},
                          "PRIVATE_ROOT": str(tmp_path / "private")}


@pytest.fixture
def su_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def console_redis_url() -> str:
    return services.redis_url_for(REDIS_DB)  # skips (or fails in CI) when Redis is down


@pytest.fixture
def redis_broker() -> Iterator[str]:
    """Point this process's Celery app at Redis db 13 (emptied), as a production site would use it."""
    with services.celery_on_redis(REDIS_DB) as url:
        yield url


database_url = services.shared_database_url


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path
    extra: list[subprocess.Popen] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL the whole worker (pool children included): what an OOM killer or a power cut does."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture(autouse=True)
def worker_var(settings, tmp_path) -> Path:
    """A var folder of this test's own, shared by this process and its workers (targets, private root,
    media, history), so console tests leave nothing in the var folder other test modules look at."""
    var = tmp_path / "var"
    var.mkdir()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN,
                          "TARGETS": {"local": {"kind": "local", "path": str(var / "dbs_backups")}},
                          "PRIVATE_ROOT": str(var / "dbs_private"), "HISTORY_ROOT": str(var / "dbs_history")}
    settings.MEDIA_ROOT = var / "media"
    return var


def start_worker(url: str, log_path: Path, *, concurrency: int = 1, pool: str = "solo",
                 include: str = "", name: str = "console", var: Path | None = None, events: bool = False,
                 env: dict | None = None, plain: bool = False) -> Worker:
    """A real worker on ``url``; ``plain`` runs it as production would (gossip, mingle and heartbeats on)."""
    extra, env = env or {}, {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_MEDIA_ROOT"}}
    env.update(REDIS_URL=url, DATABASE_URL=database_url(), DBS_LOG_LEVEL="DEBUG", **extra)
    if var is not None:
        env["DBS_VAR_DIR"] = str(var)
    cmd = [sys.executable, "-m", "celery", "-A", "demo_site", "worker", "--pool", pool,
           "--concurrency", str(concurrency), "--loglevel", "INFO",
           *([] if plain else ["--without-gossip", "--without-mingle", "--without-heartbeat"]),
           "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h"]
    if include:
        cmd += ["-I", include]
    if events:  # task events, as Flower and `celery events` ask for
        cmd += ["-E"]
    log = open(log_path, "ab")
    process = subprocess.Popen(cmd, cwd=services.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=_own_group_and_die_with_parent)
    return Worker(process, log_path)


def _own_group_and_die_with_parent() -> None:
    """In the child before exec: its own process group (kill -9 reaches the pool too), and SIGKILL when
    pytest dies, however it dies, so no worker outlives its test run and eats another run's messages."""
    import ctypes

    os.setsid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def stop_worker(worker: Worker) -> None:
    if worker.process.poll() is None:
        os.killpg(worker.process.pid, signal.SIGTERM)
        try:
            worker.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(5)


@pytest.fixture
def worker_factory(redis_broker, tmp_path, worker_var) -> Iterator:
    started: list[Worker] = []

    def factory(**kwargs) -> Worker:
        w = start_worker(redis_broker, tmp_path / f"worker-{len(started)}.log", var=worker_var, **kwargs)
        started.append(w)
        return w

    yield factory
    for w in started:
        stop_worker(w)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition",
             worker: Worker | None = None):
    """``predicate()`` once it is true; on a timeout, fail saying what was awaited, with the worker's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    log = f"; worker log:\n{worker.log()[-5000:]}" if worker else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{log}")
