"""The local folder target on real files: privacy, atomicity, never overwriting, order, deletion."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dbs_admin.backups.errors import BackupExistsError
from dbs_admin.targets.base import CHUNK
from dbs_admin.targets.errors import StoredFileMissingError, TargetError

from .conftest import flip_byte, make_file, name_at


def folder_listing(target) -> list[str]:
    return sorted(os.listdir(target.path))


def test_put_makes_a_private_copy_with_a_sha256sum_sidecar(local_target, source_dir):
    source = make_file(source_dir, 3 * CHUNK + 17)
    name = name_at(0)
    stored = local_target.put(source, name)

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (stored.name, stored.size, stored.sha256) == (name, source.stat().st_size, digest)
    assert (local_target.path / name).read_bytes() == source.read_bytes()
    assert stat.S_IMODE((local_target.path / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(local_target.path.stat().st_mode) == 0o700
    sidecar = local_target.path / f"{name}.sha256"
    assert sidecar.read_text() == f"{digest}  {name}\n"
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    # The sidecar is what the standard tool expects.
    check = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=local_target.path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert folder_listing(local_target) == sorted([name, f"{name}.sha256"])  # no temporary file left


def test_source_that_shrinks_mid_copy_leaves_nothing(local_target, source_dir):
    source = make_file(source_dir, 4 * CHUNK)

    def truncate_source(done, total):
        if done == CHUNK:
            os.truncate(source, CHUNK + 10)  # the file is cut while we read it

    with pytest.raises(TargetError, match="changed while it was copied"):
        local_target.put(source, name_at(0), progress=truncate_source)
    assert folder_listing(local_target) == []


def test_crash_mid_copy_leaves_nothing(local_target, source_dir):
    source = make_file(source_dir, 3 * CHUNK)

    def interrupt(done, total):
        raise KeyboardInterrupt  # what a Ctrl-C or a dying worker looks like to the copy loop

    with pytest.raises(KeyboardInterrupt):
        local_target.put(source, name_at(0), progress=interrupt)
    assert folder_listing(local_target) == []


def test_vanished_source_is_a_clear_error(local_target, source_dir):
    with pytest.raises(TargetError, match="cannot read"):
        local_target.put(source_dir / "gone.dbs", name_at(0))
    assert not local_target.path.exists() or folder_listing(local_target) == []


def test_existing_names_are_never_overwritten(local_target, source_dir):
    first = make_file(source_dir, 1000, "a")
    second = make_file(source_dir, 2000, "b")
    name = name_at(0)
    local_target.put(first, name)
    with pytest.raises(BackupExistsError, match="never overwritten"):
        local_target.put(second, name)
    assert (local_target.path / name).read_bytes() == first.read_bytes()
    assert folder_listing(local_target) == sorted([name, f"{name}.sha256"])


def test_a_name_that_appears_during_the_copy_is_not_replaced(local_target, source_dir):
    source = make_file(source_dir, 2 * CHUNK)
    name = name_at(0)

    def someone_else_writes(done, total):
        if done == CHUNK:
            (local_target.path / name).write_bytes(b"theirs")

    with pytest.raises(BackupExistsError):
        local_target.put(source, name, progress=someone_else_writes)
    assert (local_target.path / name).read_bytes() == b"theirs"
    assert folder_listing(local_target) == [name]


@pytest.mark.parametrize("bad", ["../escape.dbs", "a/b.dbs", ".hidden.dbs", "x.dbs.sha256", "", "a\nb.dbs", "x.dbs\n"])
def test_names_that_could_escape_or_clash_are_refused(local_target, source_dir, bad):
    source = make_file(source_dir, 10)
    with pytest.raises(TargetError, match="not a valid backup file name"):
        local_target.put(source, bad)


def test_list_is_newest_first_by_name_date_not_mtime(local_target, source_dir):
    source = make_file(source_dir, 100)
    names = [name_at(h) for h in (48, 0, 24, 72)]
    for name in names:
        local_target.put(source, name)
    # The newest backup's file is old on disk (copied back from tape, say): its name still dates it.
    os.utime(local_target.path / name_at(0), (0, 0))
    (local_target.path / "notes.txt").write_text("not a backup")
    (local_target.path / ".dbs-x.dbs.1234.part").write_bytes(b"half")
    listed = local_target.list()
    assert [f.name for f in listed] == [name_at(h) for h in (0, 24, 48, 72)]
    assert all(f.sha256 == hashlib.sha256(source.read_bytes()).hexdigest() for f in listed)
    assert listed[0].created_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_missing_folder_lists_empty(tmp_path):
    from dbs_admin.targets.local import LocalTarget

    assert LocalTarget("x", tmp_path / "never-made").list() == []


def test_open_and_fetch_are_byte_exact(local_target, source_dir, tmp_path):
    source = make_file(source_dir, 2 * CHUNK + 5)
    name = name_at(0)
    local_target.put(source, name)
    with local_target.open(name) as f:
        assert f.read() == source.read_bytes()
    dest = local_target.fetch(name, tmp_path / "fetched.dbs")
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(BackupExistsError):
        local_target.fetch(name, dest)
    nested = local_target.fetch(name, tmp_path / "staging" / "deeper" / "x.dbs")  # folders are made as needed
    assert nested.read_bytes() == source.read_bytes()
    assert local_target.local_path(name) == local_target.path / name


def test_damaged_copy_fails_verify_and_fetch(local_target, source_dir, tmp_path):
    source = make_file(source_dir, 50_000)
    name = name_at(0)
    local_target.put(source, name)
    assert local_target.verify(name).sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    flip_byte(local_target.path / name, 40_000)
    with pytest.raises(TargetError, match="does not match its recorded sha256"):
        local_target.verify(name)
    with pytest.raises(TargetError, match="does not match its recorded sha256"):
        local_target.fetch(name, tmp_path / "fetched.dbs")
    assert sorted(os.listdir(tmp_path)) == sorted(["backups", "sources"])  # no partial download


def test_delete_removes_file_and_sidecar(local_target, source_dir):
    source = make_file(source_dir, 10)
    keep, drop = name_at(1), name_at(0)
    local_target.put(source, keep)
    local_target.put(source, drop)
    local_target.delete(drop)
    assert folder_listing(local_target) == sorted([keep, f"{keep}.sha256"])
    assert not local_target.exists(drop) and local_target.exists(keep)
    with pytest.raises(StoredFileMissingError):
        local_target.delete(drop)
    with pytest.raises(StoredFileMissingError):
        local_target.open(drop)


def test_adopt_links_the_verified_file_in_without_copying(local_target, source_dir):
    source = make_file(source_dir, 2 * CHUNK + 5)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    name = name_at(0)
    stored = local_target.adopt(source, name, digest)

    final = local_target.path / name
    assert final.stat().st_ino == source.stat().st_ino  # the same bytes on disk: no second write
    assert (stored.name, stored.size, stored.sha256) == (name, source.stat().st_size, digest)
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert local_target.verify(name).sha256 == digest  # the sidecar holds the hash it was given
    assert folder_listing(local_target) == sorted([name, f"{name}.sha256"])
    source.unlink()  # the caller drops its own name; the stored file stays whole
    assert hashlib.sha256(final.read_bytes()).hexdigest() == digest


def test_adopt_never_replaces_an_existing_name(local_target, source_dir):
    name = name_at(0)
    first = make_file(source_dir, 100, "first.bin")
    local_target.put(first, name)
    second = make_file(source_dir, 100, "second.bin")
    with pytest.raises(BackupExistsError):
        local_target.adopt(second, name, hashlib.sha256(second.read_bytes()).hexdigest())
    assert (local_target.path / name).read_bytes() == first.read_bytes()


def test_adopt_across_filesystems_copies_and_checks_the_hash(source_dir):
    """/dev/shm is a tmpfs, another filesystem than the test folder: no hard link is possible there."""
    from dbs_admin.targets.local import LocalTarget

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(source_dir).st_dev:
        pytest.fail("this test needs /dev/shm on a filesystem of its own")
    target = LocalTarget("shm", shm / f"dbs-test-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        source = make_file(source_dir, CHUNK + 3)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        stored = target.adopt(source, name_at(0), digest)
        assert stored.sha256 == digest
        assert (target.path / name_at(0)).stat().st_ino != source.stat().st_ino  # a copy
        with pytest.raises(TargetError, match="changed on its way in"):
            target.adopt(source, name_at(1), "0" * 64)  # the copy does not hash to what the sealer said
        assert not (target.path / name_at(1)).exists()
    finally:
        shutil.rmtree(target.path, ignore_errors=True)
