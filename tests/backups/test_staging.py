"""Staged files: checked before they move, and every old file back in place when a later step fails."""

from __future__ import annotations

import hashlib

import pytest

from dbs_admin.backups.errors import IntegrityCheckError, UnsafePathError
from dbs_admin.backups.files import safe_path
from dbs_admin.backups.staging import Staging


def _stage(staging: Staging, root, name: str, data: bytes):
    staged = staging.new_file(root, safe_path(root, name))
    staged.write(data)
    staged.finish(len(data), hashlib.sha256(data).hexdigest(), name)


def test_apply_then_rollback_restores_the_previous_files(tmp_path):
    root = (tmp_path / "media").resolve()
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "a.png").write_bytes(b"old a")
    staging = Staging()
    _stage(staging, root, "uploads/a.png", b"new a")
    _stage(staging, root, "new/deep/b.png", b"new b")
    staging.apply()
    assert (root / "uploads" / "a.png").read_bytes() == b"new a" and (root / "new" / "deep" / "b.png").exists()

    staging.rollback()  # e.g. the database commit failed after the files moved
    staging.cleanup()

    assert (root / "uploads" / "a.png").read_bytes() == b"old a"
    assert not (root / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # no staging folder left behind


def test_a_file_that_fails_its_hash_is_refused_before_anything_moves(tmp_path):
    root = (tmp_path / "media").resolve()
    root.mkdir()
    staging = Staging()
    staged = staging.new_file(root, safe_path(root, "x.bin"))
    staged.write(b"tampered")
    with pytest.raises(IntegrityCheckError, match="does not match its recorded hash"):
        staged.finish(8, hashlib.sha256(b"original").hexdigest(), "x.bin")
    staging.cleanup()
    assert list(root.iterdir()) == []


def test_symlinks_cannot_lead_outside_the_root(tmp_path):
    root = (tmp_path / "media").resolve()
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="resolves outside"):
        safe_path(root, "link/escaped.txt")
