"""The files cache of repository backups: unchanged media files are not opened again, changed ones always are.

The proof of "not opened" is Python's own audit hook on ``open`` (every
file opened by this process), not a mock: a second backup with unchanged
media must open none of the media files, and still restore them exactly.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from dbs_admin import create_backup, restore_backup
from dbs_admin.backups.repository import collect_garbage
from dbs_admin.sealed.repo.prune import forget
from dbs_admin.targets import get_target

from .helpers import build_site, media_contents, wipe

PASSPHRASE = "tr0ub4dor & 3 horses"
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def opened_during(fn, root: Path, *args, **kwargs) -> tuple[object, set[str]]:
    """``fn(...)``'s result and the files under ``root`` this process opened meanwhile."""
    global _OPENED
    _OPENED = []
    try:
        result = fn(*args, **kwargs)
    finally:
        seen, _OPENED = _OPENED, None
    prefix = str(root.resolve()) + os.sep
    return result, {p for p in seen if os.path.realpath(p).startswith(prefix)}


@pytest.fixture
def repo_target(settings, tmp_path):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "repo": {"kind": "local", "path": str(tmp_path / "repo"),
                                                  "format": "repository"}}}
    return tmp_path / "repo"


def backup(media_root: Path, kind: str = "logical"):
    return opened_during(create_backup, media_root, database="sq_a", passphrase=PASSPHRASE, target="repo",
                         kind=kind)


def restores_to(name: str, media_root: Path) -> dict[str, str]:
    wipe(media_root)
    restore_backup(name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    return media_contents(media_root)


@pytest.mark.parametrize("kind", ["logical", "native"])
def test_unchanged_media_is_not_opened_and_still_restores(media_root, repo_target, kind):
    build_site("sq_a", posts=10, images=4)
    media = media_contents(media_root)
    assert len(media) >= 4
    time.sleep(0.2)  # older than the racy window: a file modified just now is read again next time
    first, opened = backup(media_root, kind)
    assert len(opened) == len(media), "the first backup reads every file"
    second, opened = backup(media_root, kind)
    assert opened == set(), f"unchanged media files were opened again: {sorted(opened)}"
    assert second.size < 20_000
    assert restores_to(second.name, media_root) == media
    cache_files = list((Path(media_root).parent / "private" / "repo-cache").glob("*.files"))
    assert len(cache_files) == 1
    blob = cache_files[0].read_bytes()
    assert not any(name.split("/")[-1].encode() in blob for name in media), "file names are sealed in the cache"


def test_a_rewritten_file_with_its_mtime_set_back_is_read_again(media_root, repo_target):
    build_site("sq_a", posts=6, images=3)
    time.sleep(0.2)
    backup(media_root)
    victim = sorted(p for p in Path(media_root).rglob("*") if p.is_file())[0]
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: only ctime tells
    assert victim.stat().st_mtime_ns == st.st_mtime_ns and victim.stat().st_size == st.st_size
    snap, opened = backup(media_root)
    assert opened == {str(victim.resolve())}
    expected = media_contents(media_root)
    assert restores_to(snap.name, media_root) == expected


def test_a_damaged_or_foreign_cache_is_rebuilt_and_never_trusted_beyond_the_index(media_root, repo_target):
    build_site("sq_a", posts=6, images=3)
    media = media_contents(media_root)
    time.sleep(0.2)
    first, _ = backup(media_root)
    cache = next((Path(media_root).parent / "private" / "repo-cache").glob("*.files"))
    cache.write_bytes(cache.read_bytes()[:-5] + b"xxxxx")  # damaged: its tag fails
    _, opened = backup(media_root)
    assert len(opened) == len(media), "a damaged cache is not used: every file is read"
    _, opened = backup(media_root)
    assert opened == set(), "and it was written anew"

    # Every snapshot forgotten and collected: the cache's ids are gone from the index, so it is not trusted.
    target = get_target("repo")
    for snap in target.list():
        forget(target.store, snap.name)
    collect_garbage(target, passphrase=PASSPHRASE)
    third, opened = backup(media_root)
    assert len(opened) == len(media)
    assert restores_to(third.name, media_root) == media
