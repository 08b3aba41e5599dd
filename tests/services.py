"""Real services the tests use, and one rule for when one is missing.

Locally a missing service skips the tests that need it, with the reason; in
CI (``DBS_REQUIRE_SERVICES=1``) the same absence is a failure, so nothing can
pass by quietly not running.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("DBS_TEST_CHROMIUM", "/usr/bin/chromium")


def require(service: str, available: bool, how: str) -> None:
    """Skip (locally) or fail (CI) when ``service`` is not available."""
    if available:
        return
    message = f"{service} is not available: {how}"
    if os.environ.get("DBS_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/7"
    require("Redis", port_open("127.0.0.1", 6379), "start redis-server on 127.0.0.1:6379")
    return url


def postgres_url() -> str:
    """URL of a PostgreSQL maintenance database whose role may CREATE DATABASE."""
    require("PostgreSQL", port_open("127.0.0.1", 5432), "start PostgreSQL on 127.0.0.1:5432")
    return os.environ.get("DBS_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def mysql_url() -> str:
    """URL of a MariaDB (or MySQL) server whose user may CREATE DATABASE; the database named in it is not used."""
    require("MariaDB", port_open("127.0.0.1", 3306), "start MariaDB on 127.0.0.1:3306 (apt-get install mariadb-server)")
    require("mysqlclient", importlib.util.find_spec("MySQLdb") is not None,
            "the MariaDB driver is not installed: apt-get install libmariadb-dev pkg-config, then make install")
    return os.environ.get("DBS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql")


def chromium_path() -> str:
    require("Chromium", Path(CHROMIUM).exists(), "apt-get install chromium")
    return CHROMIUM


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    username: str
    key_path: Path
    known_hosts: Path
    root: Path


def ssh_server() -> SshServer:
    """The loopback sshd of scripts/test-sshd.sh, started if it is not running."""
    require("sshd", Path("/usr/sbin/sshd").exists() and shutil.which("ssh-keygen") is not None,
            "apt-get install openssh-server openssh-client")
    result = subprocess.run([str(ROOT / "scripts" / "test-sshd.sh"), "start"], capture_output=True, text=True)
    require("sshd", result.returncode == 0, result.stderr.strip() or "scripts/test-sshd.sh start failed")
    base = Path(os.environ.get("DBS_TEST_SSHD_DIR", "/tmp/dbs-admin-sshd"))
    return SshServer(
        host="127.0.0.1",
        port=int(os.environ.get("DBS_TEST_SSHD_PORT", "2222")),
        username=os.environ.get("USER", "root") if os.geteuid() != 0 else "root",
        key_path=base / "client_ed25519",
        known_hosts=base / "known_hosts",
        root=base / "root",
    )


# This run's own Celery queue: the test process sends to it and every worker it starts (inheriting the
# environment) reads it, so two test runs on one Redis (CI and a developer, two CI jobs) never take each
# other's messages, and nothing needs to empty a Redis database another run is using.
RUN_QUEUE = os.environ.setdefault("DBS_CELERY_QUEUE", f"dbs-test-{os.getpid()}-{secrets.token_hex(3)}")


def use_run_queue(app) -> None:
    """Send ``app``'s tasks to :data:`RUN_QUEUE` (the app may have been configured before it was set)."""
    app.conf.task_default_queue = RUN_QUEUE
    for cached in ("queues", "router"):
        app.amqp.__dict__.pop(cached, None)


def redis_url_for(db: int) -> str:
    """The Redis URL the worker tests of one suite use: database ``db`` by default, or REDIS_URL's own.

    A REDIS_URL in the environment is what keeps concurrent test runs on one machine apart (each run
    names its own database), so when it is set every suite uses it: the suites of one run take turns
    (each empties it before and after), while another run's ``flushdb`` never reaches them.
    """
    if os.environ.get("REDIS_URL"):
        return redis_url()
    return redis_url().rsplit("/", 1)[0] + f"/{db}"


@contextmanager
def celery_on_redis(db: int, url: str | None = None) -> Iterator[str]:
    """Point this process's Celery app at Redis database ``db`` and this run's own queue, emptied before and after.

    Tests that hand work to a real worker subprocess send through the same
    broker a production site uses; the app's pooled connections to the
    previous broker are forgotten so nothing is sent to the wrong place.
    """
    import redis
    from kombu import pools

    from demo_site.celery import app

    url = url or redis_url_for(db)
    client = redis.Redis.from_url(url)

    def empty_our_queue() -> None:  # never flushdb: another run may be using this database
        for key in client.scan_iter(match=f"{RUN_QUEUE}*"):
            client.delete(key)

    empty_our_queue()
    saved = (app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager)
    use_run_queue(app)

    def forget_pools() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager = url, {}, False
    forget_pools()
    try:
        yield url
    finally:
        pools.reset()  # close and forget this broker's pooled connections
        app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager = saved
        forget_pools()
        empty_our_queue()
        client.close()


def shared_database_url() -> str:
    """The URL of the test database this process uses, so a worker or command subprocess sees the same rows."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    if connection.vendor == "mysql":
        return f"mysql://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 3306}/{s['NAME']}"
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


@dataclass(frozen=True)
class S3Server:
    """moto's standalone server: a real S3 API over HTTP on a loopback port (no mocked client)."""

    endpoint_url: str
    access_key: str = "dbs-test-access"
    secret_key: str = "dbs-test-secret"
    region: str = "us-east-1"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def storage_options(self, bucket: str, **extra) -> dict:
        """``OPTIONS`` of a django-storages S3 entry of ``STORAGES`` pointing at this server."""
        return {"bucket_name": bucket, "endpoint_url": self.endpoint_url, "access_key": self.access_key,
                "secret_key": self.secret_key, "region_name": self.region, **extra}


def free_port() -> int:
    """A loopback port free now (the kernel's choice), so parallel runs never fight over a fixed one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start ``moto_server`` (the ``moto[server]`` package, in the dev extra) on a free loopback port; stop it after.

    ``DBS_TEST_S3_ENDPOINT`` points the tests at a server that is already running instead.
    """
    import importlib.util
    import sys
    import time

    if os.environ.get("DBS_TEST_S3_ENDPOINT"):
        yield S3Server(os.environ["DBS_TEST_S3_ENDPOINT"])
        return
    available = all(importlib.util.find_spec(m) is not None for m in ("moto", "flask", "boto3", "storages"))
    require("S3 (moto server)", available, "pip install -e '.[dev]' (moto[server], boto3, django-storages)")
    port = free_port()
    log = open(os.environ.get("DBS_TEST_S3_LOG", os.devnull), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port, 0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                require("S3 (moto server)", False, f"moto_server did not start on 127.0.0.1:{port}")
            time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
