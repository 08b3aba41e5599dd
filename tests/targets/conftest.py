"""Fixtures of the target tests: sample files, a local target, and the real loopback sshd."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbs_admin.targets.local import LocalTarget
from dbs_admin.targets.naming import backup_file_name
from dbs_admin.targets.registry import build_target
from dbs_admin.targets.sftp import SftpTarget
from tests import services

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def name_at(hours_ago: float, kind: str = "logical", label: str = "") -> str:
    return backup_file_name(T0 - timedelta(hours=hours_ago), kind, label)


def make_file(folder: Path, size: int, name: str = "source.bin") -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def flip_byte(path: Path, offset: int = 0) -> None:
    """Corrupt by XOR (a fixed byte could be a no-op), in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def ssh_keygen(path: Path, passphrase: str = "", source: Path | None = None) -> Path:
    """A fresh ed25519 key at ``path`` or, with ``source``, a copy of it re-encrypted with ``passphrase``."""
    if source is None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    else:
        shutil.copy(source, path)
        os.chmod(path, 0o600)
        subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(path)], check=True,
                       capture_output=True)
    return path


@pytest.fixture
def source_dir(tmp_path) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    return folder


@pytest.fixture
def local_target(tmp_path) -> LocalTarget:
    return LocalTarget("local", tmp_path / "backups" / "store")


@pytest.fixture(scope="session")
def sshd() -> services.SshServer:
    return services.ssh_server()


@pytest.fixture
def sftp_dir(sshd):
    """A folder of our own inside the sshd's upload root (the server sees the same paths: no chroot)."""
    folder = sshd.root / f"targets-{secrets.token_hex(4)}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sftp_entry(sshd, sftp_dir) -> dict:
    return {
        "kind": "sftp",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "key_filename": str(sshd.key_path),
        "known_hosts": str(sshd.known_hosts),
        "path": str(sftp_dir),
        "timeout": 10,
    }


@pytest.fixture
def sftp_target(sftp_entry) -> SftpTarget:
    return build_target("offsite", sftp_entry)
