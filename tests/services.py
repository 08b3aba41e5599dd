"""Real services the tests use, and one rule for when one is missing.

Locally a missing service skips the tests that need it, with the reason; in
CI (``DBS_REQUIRE_SERVICES=1``) the same absence is a failure, so nothing can
pass by quietly not running.
"""

from __future__ import annotations

import importlib.util
import os
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
def celery_on_redis(db: int) -> Iterator[str]:
    """Point this process's Celery app at Redis database ``db``, emptied before and after.

    Tests that hand work to a real worker subprocess send through the same
    broker a production site uses; the app's pooled connections to the
    previous broker are forgotten so nothing is sent to the wrong place.
    """
    import redis
    from kombu import pools

    from demo_site.celery import app

    url = redis_url_for(db)
    client = redis.Redis.from_url(url)
    client.flushdb()
    saved = (app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager)

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
        client.flushdb()
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
