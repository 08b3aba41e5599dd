"""Real services the tests use, and one rule for when one is missing.

Locally a missing service skips the tests that need it, with the reason; in
CI (``DBS_REQUIRE_SERVICES=1``) the same absence is a failure, so nothing can
pass by quietly not running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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
