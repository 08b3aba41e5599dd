"""Files that travel with a logical backup: where they live, and where a restore may write them.

Why one module: the rule "never write outside MEDIA_ROOT or a configured file
root, whatever names the backup holds" must be enforced in exactly one
place, and the capture side uses the same rule so a hostile value in the
database (``../../etc/passwd`` in a FILE_PATH column) is never read either.

Inside a root, a few places are off limits too (:func:`protected`): the
site's SQLite database files, and dbs_admin's own folders (local backup
targets, the private root). A backup must never overwrite the live
database or the backups themselves; and merely reading a SQLite file with
ordinary file I/O is unsafe in a process that has it open, because closing
any descriptor of a file drops every POSIX lock the process holds on it.
"""

from __future__ import annotations

import os
import unicodedata
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import connections

from dbs_admin.backups.errors import UnsafePathError
from dbs_admin.backups.selection import FileColumn
from dbs_admin.conf import dbs_settings
from dbs_admin.registry import FieldKind, registry

MEDIA = "media"


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).resolve()


def file_roots() -> dict[str, Path]:
    """Roots a restore may write into, by the id a backup names them with.

    ``media`` is MEDIA_ROOT; other roots are named by their configured path:
    the location of any FileSystemStorage a FileField uses, and the
    ``file_roots`` declared in ``dbs.py``.
    """
    from django.apps import apps

    roots = {MEDIA: _resolved(settings.MEDIA_ROOT)}
    for policy in registry.policies.values():
        for root in policy.file_roots:
            roots.setdefault(str(root), _resolved(root))
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            storage = getattr(f, "storage", None)
            if isinstance(storage, FileSystemStorage):
                loc = _resolved(storage.location)
                if loc != roots[MEDIA]:
                    roots.setdefault(str(storage.location), loc)
    return roots


def clean_name(name: str) -> str:
    """``name`` if it is a relative POSIX file name whose every part is a real name; else UnsafePathError.

    Nothing is normalised away: ``uploads/.`` is not ``uploads``, ``a//b`` is not ``a/b``. A name is
    refused when it is empty, absolute, has an empty, ``.`` or ``..`` part, a backslash, a NUL or another
    control character.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"refusing file name {name!r} from the backup: it is empty")
    if "\\" in name or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise UnsafePathError(f"refusing file name {name!r} from the backup: it has a backslash or a control character")
    if name.startswith("/"):
        raise UnsafePathError(f"refusing file name {name!r} from the backup: it is absolute")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafePathError(
            f"refusing file name {name!r} from the backup: it has an empty, '.' or '..' part, so it would not "
            "name a file inside its root folder"
        )
    return name


SQLITE_SIDECARS = ("", "-wal", "-shm", "-journal")


def protected() -> tuple[frozenset[Path], tuple[Path, ...]]:
    """``(files, folders)`` no backup reads or writes, whatever root they are in (see the module docstring)."""
    sqlite_names = []
    for alias in connections:
        conn = connections[alias]
        name = str(conn.settings_dict.get("NAME") or "")
        if conn.vendor == "sqlite" and name and name != ":memory:" and not name.startswith("file:"):
            sqlite_names.append(name)
    folders = [dbs_settings.PRIVATE_ROOT]
    folders += [conf["path"] for conf in dbs_settings.TARGETS.values()
                if conf.get("kind") == "local" and conf.get("path")]
    return _protected(tuple(sqlite_names), tuple(map(str, folders)))


@lru_cache(maxsize=8)
def _protected(sqlite_names: tuple[str, ...], folders: tuple[str, ...]) -> tuple[frozenset[Path], tuple[Path, ...]]:
    """Resolved once per configuration: ``safe_path`` runs for every file of a backup."""
    files = set()
    for name in sqlite_names:
        base = _resolved(name)
        files.update(base.with_name(base.name + suffix) for suffix in SQLITE_SIDECARS)
    return frozenset(files), tuple(_resolved(f) for f in folders)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_not_protected(path: Path, root: Path, name: str = "") -> Path:
    """``path`` (resolved) unless it is a protected file, or in a protected folder that is not ``root``'s own
    ancestor (a root inside such a folder is the configuration's choice); else UnsafePathError.

    Runs for every file of a backup, so it compares strings rather than building paths.
    """
    files, folders = protected()
    if path in files:
        raise UnsafePathError(f"refusing file {name or path}: it is the site's database file {path}")
    text, root_text = str(path), str(root)
    for folder in folders:
        if _inside(text, str(folder)) and not _inside(root_text, str(folder)):
            raise UnsafePathError(f"refusing file {name or path}: it is in dbs_admin's own folder {folder}")
    return path


def safe_path(root: Path, name: str) -> Path:
    """``root/name`` resolved, guaranteed inside ``root`` (symlinks included) and not protected;
    else UnsafePathError."""
    rel = clean_name(name)
    candidate = (root / rel).resolve()
    if not candidate.is_relative_to(root):
        raise UnsafePathError(f"refusing file name {name!r}: it resolves outside {root}")
    return check_not_protected(candidate, root, repr(name))


def root_for_restore(root_id: str, roots: dict[str, Path]) -> Path:
    try:
        return roots[root_id]
    except KeyError:
        raise UnsafePathError(
            f"the backup holds files for the folder {root_id!r}, which is neither MEDIA_ROOT nor a file root "
            "configured in a dbs.py module; nothing was written"
        ) from None


def locate(column: FileColumn, value: str, roots: dict[str, Path]) -> tuple[str, str] | None:
    """``(root id, relative name)`` of the file a column value refers to, or None when it is unsafe.

    FILE columns are names inside their storage's folder; FILE_PATH columns
    hold a path relative to MEDIA_ROOT or to a declared root, or an absolute
    path inside one of them.
    """
    if column.kind is FieldKind.FILE:
        storage = getattr(column.field, "storage", None)
        root_id = MEDIA
        if isinstance(storage, FileSystemStorage) and _resolved(storage.location) != roots[MEDIA]:
            root_id = str(storage.location)
        try:
            safe_path(roots[root_id], value)
        except (UnsafePathError, KeyError):
            return None
        return root_id, clean_name(value)
    path = Path(value)
    for root_id, root in roots.items():
        if path.is_absolute():
            resolved = path.resolve()
            if resolved.is_relative_to(root):
                try:
                    check_not_protected(resolved, root)
                except UnsafePathError:
                    return None
                return root_id, resolved.relative_to(root).as_posix()
        else:
            try:
                if safe_path(root, value).is_file():
                    return root_id, clean_name(value)
            except UnsafePathError:
                return None
    return None


def _case_insensitive(folder: Path) -> bool:
    """Whether names differing only in case are one file in ``folder``'s file system (macOS, Windows shares).

    Read-only: the nearest existing folder with a letter in its name is looked up with its case swapped.
    """
    for probe in (folder, *folder.parents):
        if probe.exists() and probe.name.swapcase() != probe.name:
            try:
                return os.path.samefile(probe, probe.with_name(probe.name.swapcase()))
            except OSError:
                return False
    return False


class RestoreNames:
    """Every file name of one restore, checked against the others and against the live folders, before a byte
    of that file is written anywhere.

    Why: a restore must never turn a folder into a file, write through a link, or let two entries land on
    the same file. A name is refused (UnsafePathError, one line naming the entry) when it:
    - breaks :func:`clean_name` (empty, absolute, ``.``/``..``/empty parts, backslash, NUL);
    - appears twice, or equals another entry after Unicode normalisation (and case-folding where the file
      system ignores case);
    - is a folder of another entry (``uploads`` beside ``uploads/a.jpg``), or lies inside another entry;
    - would replace an existing folder, or lie inside an existing file;
    - passes through a symbolic link on the way from its root;
    - is protected (the site's database files, dbs_admin's own folders).
    The restore raises before anything is moved into place, so a refused backup changes nothing.
    """

    def __init__(self) -> None:
        self._roots: dict[Path, tuple[bool, dict[str, str], dict[str, str]]] = {}

    def claim(self, root: Path, name: str) -> Path:
        """The final path of entry ``name`` in ``root`` (not resolved: no link is followed)."""
        clean_name(name)
        if root not in self._roots:
            self._roots[root] = (_case_insensitive(root), {}, {})
        folded, files, folders = self._roots[root]
        key = unicodedata.normalize("NFC", name)
        if folded:
            key = key.casefold()
        parts = key.split("/")
        if key in files:
            raise UnsafePathError(f"refusing the backup: it holds the file {name!r} twice"
                                  + (f" (as {files[key]!r})" if files[key] != name else "") + "; nothing was written")
        if key in folders:
            raise UnsafePathError(f"refusing the backup: its entry {name!r} is the folder of its entry "
                                  f"{folders[key]!r}; nothing was written")
        for i in range(1, len(parts)):
            if (prefix := "/".join(parts[:i])) in files:
                raise UnsafePathError(f"refusing the backup: its entry {name!r} lies inside its file entry "
                                      f"{files[prefix]!r}; nothing was written")
        files[key] = name
        for i in range(1, len(parts)):
            folders.setdefault("/".join(parts[:i]), name)
        path = root
        for part in name.split("/")[:-1]:
            path = path / part
            if path.is_symlink():
                raise UnsafePathError(f"refusing the backup's file {name!r}: {path} is a symbolic link, and a restore "
                                      "never writes through one; nothing was written")
            if path.exists() and not path.is_dir():
                raise UnsafePathError(f"refusing the backup's file {name!r}: it would lie inside the existing file "
                                      f"{path}; nothing was written")
        final = path / name.rsplit("/", 1)[-1]
        if final.is_dir() and not final.is_symlink():
            raise UnsafePathError(f"refusing the backup's file {name!r}: it would replace the folder {final}; "
                                  "nothing was written")
        return check_not_protected(final, root, repr(name))
