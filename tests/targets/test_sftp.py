"""The SFTP target against the real loopback sshd (tests.services.ssh_server): no mocks."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time

import pytest

from dbs_admin.backups.errors import BackupExistsError
from dbs_admin.targets.base import CHUNK
from dbs_admin.targets.configured import build_target
from dbs_admin.targets.errors import StoredFileMissingError, TargetError
from dbs_admin.targets.sftp import HostKeyError

from .conftest import flip_byte, make_file, name_at, ssh_keygen


def remote_listing(folder) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_upload_list_open_fetch_byte_exact(sftp_target, sftp_dir, source_dir, tmp_path):
    source = make_file(source_dir, 9 * CHUNK + 123)  # > 2 read windows: exercises the windowed reader
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    older, name = name_at(30), name_at(0)
    sftp_target.put(make_file(source_dir, 10, "small"), older)
    stored = sftp_target.put(source, name)

    assert (stored.name, stored.size, stored.sha256) == (name, len(data), digest)
    assert (sftp_dir / name).read_bytes() == data
    assert stat.S_IMODE((sftp_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(sftp_dir.stat().st_mode) == 0o700
    assert (sftp_dir / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
    assert remote_listing(sftp_dir) == sorted([name, f"{name}.sha256", older, f"{older}.sha256"])

    listed = sftp_target.list()
    assert [(f.name, f.size, f.sha256) for f in listed][0] == (name, len(data), digest)
    assert [f.name for f in listed] == [name, older]
    assert sftp_target.exists(name) and not sftp_target.exists(name_at(5))

    with sftp_target.open(name) as stream:
        assert stream.read(10) == data[:10]
        stream.seek(5 * CHUNK)
        assert stream.read(CHUNK) == data[5 * CHUNK : 6 * CHUNK]
        stream.seek(0)
        assert stream.read() == data
    assert sftp_target.fetch(name, tmp_path / "got.dbs").read_bytes() == data
    assert sftp_target.verify(name).sha256 == digest
    assert sftp_target.local_path(name) is None


def test_existing_name_is_refused_and_left_intact(sftp_target, sftp_dir, source_dir):
    name = name_at(0)
    sftp_target.put(make_file(source_dir, 100, "a"), name)
    before = (sftp_dir / name).read_bytes()
    with pytest.raises(BackupExistsError, match="never overwritten"):
        sftp_target.put(make_file(source_dir, 200, "b"), name)
    assert (sftp_dir / name).read_bytes() == before
    assert remote_listing(sftp_dir) == sorted([name, f"{name}.sha256"])


def test_name_that_appears_during_upload_is_not_overwritten(sftp_target, sftp_dir, source_dir):
    name = name_at(0)

    def someone_else_uploads(done, total):
        if done == CHUNK:
            (sftp_dir / name).write_bytes(b"theirs")

    with pytest.raises(BackupExistsError, match="appeared"):
        sftp_target.put(make_file(source_dir, 3 * CHUNK), name, progress=someone_else_uploads)
    assert (sftp_dir / name).read_bytes() == b"theirs"
    assert remote_listing(sftp_dir) == [name]  # our temporary file is gone


def test_upload_verification_catches_what_the_server_stored_wrong(sftp_target, sftp_dir, source_dir):
    """The check re-reads the server's bytes: damage after they were written is caught, nothing is published."""
    source = make_file(source_dir, 3 * CHUNK)

    def damage_on_server(done, total):
        if done != total:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server applies writes in order: wait for the last one
            parts = [p for p in sftp_dir.iterdir() if p.name.endswith(".part")]
            if parts and parts[0].stat().st_size == total:
                flip_byte(parts[0], 12345)
                return
            time.sleep(0.01)
        raise AssertionError("upload never completed on the server")

    with pytest.raises(TargetError, match="differs from its source"):
        sftp_target.put(source, name_at(0), progress=damage_on_server)
    assert remote_listing(sftp_dir) == []


def test_tampered_copy_fails_verify_and_fetch(sftp_target, sftp_dir, source_dir, tmp_path):
    name = name_at(0)
    sftp_target.put(make_file(source_dir, 2 * CHUNK), name)
    flip_byte(sftp_dir / name, CHUNK + 7)
    with pytest.raises(TargetError, match="does not match its recorded sha256"):
        sftp_target.verify(name)
    with pytest.raises(TargetError, match="does not match its recorded sha256"):
        sftp_target.fetch(name, tmp_path / "got.dbs")
    assert not (tmp_path / "got.dbs").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_delete_removes_file_and_sidecar(sftp_target, sftp_dir, source_dir):
    keep, drop = name_at(1), name_at(0)
    for name in (keep, drop):
        sftp_target.put(make_file(source_dir, 10, name), name)
    sftp_target.delete(drop)
    assert remote_listing(sftp_dir) == sorted([keep, f"{keep}.sha256"])
    with pytest.raises(StoredFileMissingError):
        sftp_target.delete(drop)
    with pytest.raises(StoredFileMissingError):
        sftp_target.open(drop)


def test_list_of_a_folder_not_yet_created_is_empty(sftp_target):
    assert sftp_target.list() == []


def host_key_line(sshd, key_pub: str) -> str:
    return f"[{sshd.host}]:{sshd.port} {' '.join(key_pub.split()[:2])}\n"


def test_unknown_host_key_is_refused(sshd, sftp_entry, tmp_path):
    other = ssh_keygen(tmp_path / "other_host")
    known_hosts = tmp_path / "known_hosts"
    # Only some other host is known.
    known_hosts.write_text(f"[backup.example]:22 {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    target = build_target("offsite", {**sftp_entry, "known_hosts": str(known_hosts)})
    started = time.monotonic()
    with pytest.raises(HostKeyError) as info:
        target.list()
    assert time.monotonic() - started < 5  # refused, not retried
    message = str(info.value)
    assert f"[{sshd.host}]:{sshd.port}" in message and str(known_hosts) in message and "ssh-ed25519" in message


def test_changed_host_key_is_refused(sshd, sftp_entry, tmp_path):
    impostor = ssh_keygen(tmp_path / "impostor")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(host_key_line(sshd, impostor.with_suffix(".pub").read_text()))
    target = build_target("offsite", {**sftp_entry, "known_hosts": str(known_hosts)})
    with pytest.raises(HostKeyError, match="differs from the key") as info:
        target.put(make_file(tmp_path, 10), name_at(0))
    assert f"{sshd.host}:{sshd.port}" in str(info.value) and str(known_hosts) in str(info.value)


def test_missing_known_hosts_file_is_refused(sftp_entry, tmp_path):
    target = build_target("offsite", {**sftp_entry, "known_hosts": str(tmp_path / "absent")})
    with pytest.raises(HostKeyError, match="does not exist"):
        target.list()


def test_wrong_client_key_is_refused(sshd, sftp_entry, tmp_path):
    stranger = ssh_keygen(tmp_path / "stranger")
    target = build_target("offsite", {**sftp_entry, "key_filename": str(stranger)})
    with pytest.raises(TargetError, match=f"refused user '{sshd.username}' with key {stranger}"):
        target.list()


def test_encrypted_key_passphrase_comes_from_the_named_env_var(sshd, sftp_entry, tmp_path, monkeypatch):
    locked = ssh_keygen(tmp_path / "locked", passphrase="s3cret words", source=sshd.key_path)
    entry = {**sftp_entry, "key_filename": str(locked)}
    with pytest.raises(TargetError, match="is encrypted; name the environment variable"):
        build_target("offsite", entry).list()
    entry["key_passphrase_env"] = "DBS_TEST_SFTP_KEY_PASSPHRASE"
    monkeypatch.delenv("DBS_TEST_SFTP_KEY_PASSPHRASE", raising=False)
    with pytest.raises(TargetError, match="DBS_TEST_SFTP_KEY_PASSPHRASE .* is not set"):
        build_target("offsite", entry).list()
    monkeypatch.setenv("DBS_TEST_SFTP_KEY_PASSPHRASE", "not it")
    with pytest.raises(TargetError, match="wrong passphrase"):
        build_target("offsite", entry).list()
    monkeypatch.setenv("DBS_TEST_SFTP_KEY_PASSPHRASE", "s3cret words")
    assert build_target("offsite", entry).list() == []


def test_unreachable_port_fails_fast_with_a_target_error(sftp_entry):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = build_target("offsite", {**sftp_entry, "port": port})
    started = time.monotonic()
    with pytest.raises(TargetError, match=f"sftp://.*:{port}.* unreachable .* after 3 attempt"):
        target.list()
    assert time.monotonic() - started < 5


def test_dropped_connections_are_retried_with_backoff(sftp_entry, flaky_proxy, source_dir):
    proxy, known_hosts = flaky_proxy({1: 0, 2: 0})
    target = build_target("offsite", {**sftp_entry, "port": proxy.port, "known_hosts": str(known_hosts),
                                      "retries": 2, "backoff": 0.2})
    started = time.monotonic()
    stored = target.put(make_file(source_dir, 1000), name_at(0))
    assert stored.size == 1000 and proxy.connections == 3
    assert time.monotonic() - started >= 0.2 + 0.4  # backed off twice


def test_a_download_cut_midway_is_retried_and_still_byte_exact(sftp_target, sftp_entry, flaky_proxy, source_dir,
                                                               tmp_path):
    source = make_file(source_dir, 8 * CHUNK)
    name = name_at(0)
    sftp_target.put(source, name)
    proxy, known_hosts = flaky_proxy({1: 3 * CHUNK})  # the first connection dies after 3 MiB
    target = build_target("offsite", {**sftp_entry, "port": proxy.port, "known_hosts": str(known_hosts),
                                      "backoff": 0.1})
    assert target.fetch(name, tmp_path / "got.dbs").read_bytes() == source.read_bytes()
    assert proxy.connections == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got.dbs", known_hosts.name, "sources"]


def test_refusals_are_not_retried(sshd, sftp_entry, flaky_proxy, tmp_path):
    proxy, known_hosts = flaky_proxy({})
    impostor = ssh_keygen(tmp_path / "impostor")
    known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {' '.join(impostor.with_suffix('.pub').read_text().split()[:2])}")
    target = build_target("offsite", {**sftp_entry, "port": proxy.port, "known_hosts": str(known_hosts)})
    with pytest.raises(HostKeyError):
        target.list()
    stranger = ssh_keygen(tmp_path / "stranger")
    proxy2, known_hosts2 = flaky_proxy({})
    target = build_target("offsite", {**sftp_entry, "port": proxy2.port, "known_hosts": str(known_hosts2),
                                      "key_filename": str(stranger)})
    with pytest.raises(TargetError, match="refused user"):
        target.list()
    assert (proxy.connections, proxy2.connections) == (1, 1)


def test_an_upload_cut_midway_is_retried_and_leaves_no_temporary_file(sftp_entry, flaky_proxy, sftp_dir, source_dir):
    source = make_file(source_dir, 6 * CHUNK)
    proxy, known_hosts = flaky_proxy({}, cut_upload={1: 3 * CHUNK})
    target = build_target("offsite", {**sftp_entry, "port": proxy.port, "known_hosts": str(known_hosts),
                                      "backoff": 0.1})
    name = name_at(0)
    assert target.put(source, name).size == 6 * CHUNK
    assert proxy.connections == 2
    assert (sftp_dir / name).read_bytes() == source.read_bytes()
    assert remote_listing(sftp_dir) == sorted([name, f"{name}.sha256"])  # the first attempt's .part was removed
