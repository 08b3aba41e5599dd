"""Fixtures of the target tests: sample files, a local target, and the real loopback sshd."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbs_admin.targets.configured import build_target
from dbs_admin.targets.local import LocalTarget
from dbs_admin.targets.naming import backup_file_name
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


class FlakyProxy:
    """A real TCP relay to the sshd that can drop chosen connections: at once, or after some bytes.

    Retries are tested against real broken connections, not a mocked client:
    ``drop={1: 0}`` closes the first connection before the SSH banner,
    ``drop={1: 2_000_000}`` cuts it after 2 MB flowed from server to client,
    ``cut_upload={1: 2_000_000}`` after 2 MB flowed from client to server.
    """

    def __init__(
        self, upstream: tuple[str, int], drop: dict[int, int], cut_upload: dict[int, int] | None = None
    ) -> None:
        self.upstream = upstream
        self.drop = drop
        self.cut_upload = cut_upload or {}
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.drop.get(self.connections)
            if limit == 0:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            up_limit = self.cut_upload.get(self.connections)
            threading.Thread(target=self._pump, args=(client, server, up_limit), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, limit), daemon=True).start()

    @staticmethod
    def _pump(src, dst, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def flaky_proxy(sshd, tmp_path):
    """Factory: a FlakyProxy in front of the sshd, and a known_hosts naming the sshd's key at the proxy's port."""
    proxies: list[FlakyProxy] = []

    def make(drop: dict[int, int], cut_upload: dict[int, int] | None = None) -> tuple[FlakyProxy, Path]:
        proxy = FlakyProxy((sshd.host, sshd.port), drop, cut_upload)
        proxies.append(proxy)
        host_key = " ".join(sshd.known_hosts.read_text().split()[1:3])
        known_hosts = tmp_path / f"known_hosts_{proxy.port}"
        known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {host_key}\n")
        return proxy, known_hosts

    yield make
    for proxy in proxies:
        proxy.close()
