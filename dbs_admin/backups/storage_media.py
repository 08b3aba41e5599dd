"""Media that lives in a Django storage other than a local folder (S3, GCS, Azure...): read and written through it.

Why: a site whose MEDIA is on S3 keeps no file under MEDIA_ROOT, so a backup
must read each file through the storage of the field that holds it (and
"all media", for native backups, through the default storage), and a
restore must write it back through the same storage. Local folders
(``FileSystemStorage``) keep the path-based code of ``files.py`` and
``staging.py``, with its protected paths and atomic moves; this module is
only the other storages.

A backup names such files' root ``storage:<alias>`` (an alias of
``STORAGES``) or, for a field whose storage is no alias,
``storage:<app_label.Model>.<field>``. Names are checked with the same
rule as local ones (``files.clean_name``): relative, no ``..``.

All or nothing: a restore stages every file in a private folder (hash
checked) and writes them through the storage only once the whole backup has
been read; a file it replaces is kept aside first, so a failure afterwards
(the database commit) puts the old bytes back. A drill redirects every
storage root into its scratch folder (:func:`redirected`), never touching the
live storage.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from dbs_admin.backups.errors import RestoreError, UnsafePathError
from dbs_admin.backups.files import clean_name
from dbs_admin.backups.sources import private_dir
from dbs_admin.backups.staging import StagedFile, Staging

PREFIX = "storage:"
_redirect: contextvars.ContextVar[Path | None] = contextvars.ContextVar("dbs_storage_redirect", default=None)


def _is_local(storage: Any) -> bool:
    from django.core.files.storage import FileSystemStorage, default_storage, storages

    if storage is default_storage:  # a lazy object: look at what it stands for
        storage = storages["default"]
    return isinstance(storage, FileSystemStorage)


def _alias_of(storage: Any) -> str | None:
    from django.core.files.storage import default_storage, storages

    if storage is default_storage:
        return "default"
    for alias in getattr(settings, "STORAGES", {}):
        if storages[alias] is storage:
            return alias
    return None


def root_for_field(model: Any, field: Any) -> str | None:
    """The root id of a FileField's files when its storage is not a local folder, else None (``files.py``)."""
    storage = getattr(field, "storage", None)
    if storage is None or _is_local(storage):
        return None
    alias = _alias_of(storage)
    return PREFIX + (alias if alias is not None else f"{model._meta.label}.{field.name}")


def root_for_all_media() -> str | None:
    """``storage:default`` when the default storage (where "all media" lives) is not a local folder."""
    from django.core.files.storage import storages

    return None if _is_local(storages["default"]) else PREFIX + "default"


def is_storage_root(root_id: Any) -> bool:
    return isinstance(root_id, str) and root_id.startswith(PREFIX)


@contextmanager
def redirected(folder: Path) -> Iterator[None]:
    """Within the block every storage root is a folder under ``folder`` (drills restore there, not live)."""
    token = _redirect.set(Path(folder))
    try:
        yield
    finally:
        _redirect.reset(token)


def redirect_folder(root_id: str) -> Path | None:
    """The folder a redirected storage root writes into, or None when no redirect is active."""
    base = _redirect.get()
    if base is None:
        return None
    return base / re.sub(r"[^A-Za-z0-9_.-]", "_", root_id[len(PREFIX):])


def storage_for(root_id: str) -> Any:
    """The storage a backup's files of ``root_id`` are read from and restored into."""
    from django.apps import apps
    from django.core.exceptions import FieldDoesNotExist
    from django.core.files.storage import FileSystemStorage, storages

    folder = redirect_folder(root_id)
    if folder is not None:
        return FileSystemStorage(location=str(folder))
    key = root_id[len(PREFIX):]
    if key in getattr(settings, "STORAGES", {}):
        return storages[key]
    label, _, field_name = key.rpartition(".")
    try:
        return apps.get_model(label)._meta.get_field(field_name).storage
    except (LookupError, ValueError, FieldDoesNotExist, AttributeError) as exc:  # no such model or file field
        raise UnsafePathError(
            f"the backup holds files of the storage {key!r}, which is neither an alias of STORAGES nor a file "
            "field of this site; nothing was written"
        ) from exc


def all_files(root_id: str) -> list[str]:
    """Every file name in the storage of ``root_id`` (walked with ``listdir``), sorted."""
    storage = storage_for(root_id)
    names: list[str] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        try:
            dirs, files = storage.listdir(folder)
        except FileNotFoundError:
            continue
        prefix = f"{folder}/" if folder else ""
        pending += [prefix + d for d in dirs if d]
        names += [prefix + f for f in files if f]
    return sorted(names)


def open_file(root_id: str, name: str) -> BinaryIO | None:
    """The file streamed from its storage (S3: the object's body as it arrives), None when it is missing."""
    from dbs_admin.targets import s3

    storage = storage_for(root_id)
    name = clean_name(name)
    try:
        if s3.is_s3(storage):
            return s3.open_stream(storage, s3.key_of(storage, name))
        return storage.open(name, "rb")
    except FileNotFoundError:
        return None
    except Exception as exc:
        described = getattr(exc, "response", None)
        if isinstance(described, dict) and described.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise


def _hash(f: BinaryIO) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while block := f.read(1024 * 1024):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def diff_state(root_id: str, name: str, size: int, sha256: str) -> str:
    """For a dry run: whether the storage's file is "new", "different" or "identical" to the backup's."""
    f = open_file(root_id, name)
    if f is None:
        return "new"
    with f:
        return "identical" if _hash(f) == (size, sha256) else "different"


class MixedStaging(Staging):
    """``Staging`` for local roots, plus files bound for storages: staged in a private folder, written through
    their storage by :meth:`apply` (the replaced file kept aside), undone by :meth:`rollback`."""

    def __init__(self) -> None:
        super().__init__()
        self._work: Path | None = None
        self._remote: list[tuple[str, str, StagedFile]] = []
        self._written: list[tuple[str, str, Path | None]] = []

    def _folder(self) -> Path:
        if self._work is None:
            self._work = private_dir("restore-storage")
            (self._work / "old").mkdir()
        return self._work

    def new_storage_file(self, root_id: str, name: str) -> StagedFile:
        name = clean_name(name)
        path = self._folder() / f"{len(self._remote):09d}"
        staged = StagedFile(path, Path(name))
        self._remote.append((root_id, name, staged))
        return staged

    @property
    def storage_files(self) -> int:
        return len(self._remote)

    def apply(self) -> None:
        super().apply()
        from django.core.files import File

        for root_id, name, staged in self._remote:
            storage = storage_for(root_id)
            old = None
            if storage.exists(name):
                old = self._folder() / "old" / f"{len(self._written):09d}"
                with storage.open(name, "rb") as src, open(old, "xb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
                storage.delete(name)
            self._written.append((root_id, name, old))
            with open(staged.path, "rb") as f:
                saved = storage.save(name, File(f, name=Path(name).name))
            if saved != name:
                storage.delete(saved)
                raise RestoreError(f"the storage {root_id[len(PREFIX):]!r} stored {name!r} as {saved!r}; "
                                   "nothing was restored")

    def rollback(self) -> None:
        from django.core.files import File

        for root_id, name, old in reversed(self._written):
            try:
                storage = storage_for(root_id)
                if storage.exists(name):
                    storage.delete(name)
                if old is not None:
                    with open(old, "rb") as f:
                        storage.save(name, File(f, name=Path(name).name))
            except Exception:  # noqa: BLE001 - put back as much as possible; the restore's error is reported
                continue
        self._written.clear()
        super().rollback()

    def cleanup(self) -> None:
        for _, _, staged in self._remote:
            staged.abort()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
        super().cleanup()
