"""Where a backup is read from, and where a new one is written before it reaches its target.

Why a module: restores, validation and the console accept either a local
path or a name on a target; a remote copy is fetched to a private folder
(0700, outside MEDIA_ROOT) and removed afterwards, so callers only ever see
a local path.

A backup with several copies is read from the target asked for first, then
from its other recorded copies: a copy that is missing, unreachable or fails
its hash check on the way down is passed over, and the caller is told which
copy was used.
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
from dbs_admin.errors import DbsError
from dbs_admin.targets import Target, get_target


def private_dir(purpose: str) -> Path:
    """A fresh private working folder under PRIVATE_ROOT (0700); the caller removes it."""
    root = Path(dbs_settings.PRIVATE_ROOT)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    d = root / f"{purpose}-{secrets.token_hex(6)}"
    d.mkdir(mode=0o700)
    leftovers.claim(d)
    return d


WORK_PURPOSES = ("create", "native", "fetch", "reset", "restore", "export")


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
    with readable_copy(source, target_name) as (path, _):
        yield path


@contextmanager
def readable_copy(source: str | Path, target_name: str | None) -> Iterator[tuple[Path, str]]:
    """``(local path, where it came from)`` of ``source``: a path as given, or a backup name read from
    ``target_name``'s copy or, failing that, another recorded copy (fetched and hash-checked if remote)."""
    path = Path(source)
    if target_name is None and (path.exists() or path.name != str(source)):
        if not path.is_file():
            raise BackupError(f"{path} is not a file; give the path of a .dbs backup")
        yield path, str(path)
        return
    work = private_dir("fetch")
    try:
        local, target = fetch_verified(path.name, target_name, work)
        yield local, f"target {target!r}"
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


def copy_targets(name: str, preferred: str | None) -> list[Target]:
    """The target asked for (else the default), then every other target recorded as holding a verified copy."""
    from dbs_admin.models import BackupCopy

    first = get_target(preferred)
    others = (BackupCopy.objects.filter(backup__name=name, state=BackupCopy.State.STORED)
              .exclude(target=first.name).order_by("target").values_list("target", flat=True))
    return [first, *(get_target(t) for t in others if t in dbs_settings.TARGETS)]


def fetch_verified(name: str, preferred: str | None, folder: Path) -> tuple[Path, str]:
    """``(local path, target name)`` of the first copy of ``name`` that is there and passes its hash check.

    A local folder's copy is read in place (the sealed reader checks every block as it reads); a remote
    one is downloaded into ``folder`` and checked against its sidecar.
    """
    targets = copy_targets(name, preferred)
    problems = []
    for t in targets:
        try:
            if not t.exists(name):
                problems.append(elsewhere(name, t.name) or f"target {t.name!r} holds no backup named {name!r}")
                continue
            local = t.local_path(name)
            if local is not None:
                return local, t.name
            return t.fetch(name, folder / f"{t.name}-{name}"), t.name
        except (DbsError, OSError) as exc:
            problems.append(str(exc))
    if len(targets) == 1 and problems[0].endswith(f"holds no backup named {name!r}"):
        raise BackupError(f"{problems[0]}; see manage.py dbs_list")
    raise BackupError(f"no copy of {name} could be read: " + "; ".join(problems))


def elsewhere(name: str, target: str) -> str | None:
    """The one line saying ``name``'s copy on ``target`` is on another host's own disk, or None."""
    from dbs_admin.backups.host_disks import OnAnotherHostError, refuse_if_elsewhere
    from dbs_admin.models import BackupCopy

    copy = BackupCopy.objects.select_related("backup").filter(backup__name=name, target=target).first()
    if copy is None:
        return None
    try:
        refuse_if_elsewhere(copy)
    except OnAnotherHostError as exc:
        return str(exc)
    return None


def latest_name(target_name: str | None) -> str:
    """The newest backup on a target (``--latest``)."""
    t = get_target(target_name)
    files = t.list()
    if not files:
        raise BackupError(f"target {t.name!r} holds no backups")
    return files[0].name
