"""Where a backup is read from, and where a new one is written before it reaches its target.

Why a module: restores, validation and the console accept either a local
path or a name on a target; a remote copy is fetched to a private folder
(0700, outside MEDIA_ROOT) and removed afterwards, so callers only ever see
a local path.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from dbs_admin.backups import leftovers
from dbs_admin.backups.errors import BackupError
from dbs_admin.backups.files import file_roots
from dbs_admin.backups.staging import Staging
from dbs_admin.conf import dbs_settings
from dbs_admin.targets import Target, get_target


def private_dir(purpose: str) -> Path:
    """A fresh private working folder under PRIVATE_ROOT (0700); the caller removes it."""
    root = Path(dbs_settings.PRIVATE_ROOT)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    d = root / f"{purpose}-{secrets.token_hex(6)}"
    d.mkdir(mode=0o700)
    leftovers.claim(d)
    return d


WORK_PURPOSES = ("create", "native", "fetch", "reset", "restore")


def sweep_leftovers() -> list[Path]:
    """Remove what killed backups and restores on this host left: private work folders and staging folders.

    Run at the start of every backup and restore, and by the job reaper; folders of live processes (this
    one's included) and of other hosts are left alone (see ``leftovers``).
    """
    removed = []
    root = Path(dbs_settings.PRIVATE_ROOT)
    if root.is_dir():
        for purpose in WORK_PURPOSES:
            removed += leftovers.sweep(root, f"{purpose}-*")
    return removed + Staging.sweep_orphans(file_roots().values())


def target(name: str | None) -> Target:
    return get_target(name)


@contextmanager
def local_copy(source: str | Path, target_name: str | None) -> Iterator[Path]:
    """A local path of ``source``: a path as given, or a backup name on a target (fetched if remote)."""
    path = Path(source)
    if target_name is None and (path.exists() or path.name != str(source)):
        if not path.is_file():
            raise BackupError(f"{path} is not a file; give the path of a .dbs backup")
        yield path
        return
    t = get_target(target_name)
    name = path.name
    if not t.exists(name):
        raise BackupError(f"target {t.name!r} holds no backup named {name!r}; see manage.py dbs_list")
    local = t.local_path(name)
    if local is not None:
        yield local
        return
    work = private_dir("fetch")
    try:
        yield t.fetch(name, work / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def ranged_reader(source: str | Path, target_name: str | None) -> Iterator[tuple[BinaryIO, bool]]:
    """``(reader, remote)``: a seekable reader of ``source`` that fetches only what is read, a local file or a
    backup on a target read by ranges (``open_ranged``; a target without it is read as ``open`` streams)."""
    path = Path(source)
    if target_name is None and (path.exists() or path.name != str(source)):
        if not path.is_file():
            raise BackupError(f"{path} is not a file; give the path of a .dbs backup")
        with open(path, "rb") as f:
            yield f, False
        return
    t = get_target(target_name)
    name = path.name
    local = t.local_path(name)
    if local is not None:
        if not local.is_file():
            raise BackupError(f"target {t.name!r} holds no backup named {name!r}; see manage.py dbs_list")
        with open(local, "rb") as f:
            yield f, False
        return
    opener = getattr(t, "open_ranged", None) or t.open
    with opener(name) as f:
        yield f, True


def latest_name(target_name: str | None) -> str:
    """The newest backup on a target (``--latest``)."""
    t = get_target(target_name)
    files = t.list()
    if not files:
        raise BackupError(f"target {t.name!r} holds no backups")
    return files[0].name
