"""A target over Django's storage API: any alias of the ``STORAGES`` setting (S3, GCS, Azure, SFTP, a folder).

Settings: ``{"kind": "storage", "storage": "<alias>"}``, optionally with
``"prefix": "dbs/"`` (a folder inside the storage). The storage brings its
own credentials (its settings, ``OPTIONS``, or the environment): nothing
secret is in the target's entry, the database or the broker.

Publication: a backup counts as stored only once its ``.sha256`` sidecar is
written, after the copy was verified; listing, ``exists``, ``open`` and
``fetch`` see nothing else. So whatever a backend's own write semantics, no
reader of the target ever takes a partial upload for a backup. On top of
that the object itself never appears half-written where the backend allows:

- django-storages' S3: a multipart upload appears only when complete, and is
  verified by S3's own SHA-256 checksum (``targets/s3.py``);
- a storage with local paths (``FileSystemStorage``): a hidden temporary
  file, fsynced, re-read, then hard-linked under its name (as ``local``);
- any other storage: written with ``Storage.save`` and verified by one
  streamed read through ``Storage.open``.

What a killed upload leaves (an incomplete multipart upload, a temporary
file, an object without its sidecar) is removed by :meth:`StorageTarget.discard`
(the reaper, for a lost job's backup) and :meth:`StorageTarget.sweep` (after
retention, for anything older than a day).

Every backend error becomes one line naming the target: the bucket that does
not exist, access denied, the endpoint that does not answer.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from dbs_admin.errors import DbsError
from dbs_admin.targets import s3
from dbs_admin.targets.base import (
    CHUNK,
    DIR_MODE,
    FILE_MODE,
    Progress,
    StoredFile,
    check_name,
    fsync_dir,
    hash_stream,
    is_listed_name,
    parse_sidecar,
    publish_no_replace,
    receive_file,
    sidecar_name,
    sidecar_text,
)
from dbs_admin.targets.errors import BackupExistsError, StoredFileMissingError, TargetError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StorageError(TargetError):
    """A storage backend failed; ``transient`` when the network did (worth retrying), not a refusal."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def _clean_prefix(prefix: str) -> str:
    parts = [p for p in str(prefix).replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"prefix {prefix!r} must be a plain folder path (no '.' or '..')")
    return "/".join(parts) + "/" if parts else ""


class StorageTarget:
    """Sealed files in a Django storage; see the module docstring."""

    kind = "storage"
    verifies_on_put = True  # put() verifies the stored copy itself: create_backup need not read it again

    def __init__(self, name: str, storage: str, prefix: str = "") -> None:
        from django.conf import settings

        if storage not in getattr(settings, "STORAGES", {}):
            known = ", ".join(sorted(getattr(settings, "STORAGES", {}))) or "none"
            raise ValueError(f"STORAGES has no alias {storage!r} (configured: {known})")
        self.name = name
        self.alias = storage
        self.prefix = _clean_prefix(prefix)

    def __repr__(self) -> str:
        return f"<StorageTarget {self.name!r} storage={self.alias!r} prefix={self.prefix!r}>"

    # -- the storage and its kind ------------------------------------------------------------------

    @property
    def storage(self) -> Any:
        from django.core.files.storage import storages

        return storages[self.alias]

    def _is_s3(self) -> bool:
        return s3.is_s3(self.storage)

    def _path_of(self, rel: str) -> Path | None:
        """The local path of ``rel`` when the storage is a folder on this machine, else None.

        Only a ``FileSystemStorage`` counts: others may answer ``path()`` with a
        name that is no file (``InMemoryStorage`` does).
        """
        from django.core.files.storage import FileSystemStorage

        storage = self.storage
        return Path(storage.path(rel)) if isinstance(storage, FileSystemStorage) else None

    def _rel(self, name: str) -> str:
        return self.prefix + check_name(name)

    def _s3_key(self, rel: str) -> str:
        return s3.key_of(self.storage, rel)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Backend errors as one line naming the target (and whether retrying may help)."""
        try:
            yield
        except (TargetError, BackupExistsError, DbsError):
            raise
        except Exception as exc:
            described = s3.describe_error(exc)
            if described is not None:
                text, transient = described
            elif isinstance(exc, OSError):
                where = f": {exc.filename}" if exc.filename else ""
                text, transient = f"{exc.strerror or type(exc).__name__}{where}", False
            else:
                text, transient = f"{type(exc).__name__}: {exc}", False
            text = " ".join(text.split())
            raise StorageError(f"target {self.name!r} (storage {self.alias!r}): {what} failed: {text}",
                               transient=transient) from exc

    # -- sidecars: the mark of a published backup -------------------------------------------------------

    def _read_sidecar(self, name: str) -> str | None:
        rel = self._rel(name) + ".sha256"
        try:
            with self.storage.open(rel, "rb") as f:
                return parse_sidecar(f.read(256))
        except FileNotFoundError:
            return None
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise

    def _write_sidecar(self, name: str, sha256: str) -> None:
        rel = sidecar_name(self._rel(name))
        data = sidecar_text(name, sha256)
        if self._is_s3():
            s3.put_small(self.storage, self._s3_key(rel), data)
            return
        path = self._path_of(rel)
        if path is not None:
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
                fsync_dir(path.parent)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return
        from django.core.files.base import ContentFile

        if self.storage.exists(rel):
            self.storage.delete(rel)
        saved = self.storage.save(rel, ContentFile(data))
        if saved != rel:
            self.storage.delete(saved)
            raise TargetError(f"target {self.name!r}: the storage stored the sidecar of {name} under another name")

    # -- Target protocol -------------------------------------------------------------------------

    def put(self, local_path: Path, name: str, *, progress: Progress | None = None) -> StoredFile:
        """Upload, verify, then publish with the sidecar; refuses an existing name, never overwrites."""
        rel = self._rel(name)
        source = Path(local_path)
        if not source.is_file():
            raise TargetError(f"cannot read {source}: not a file")
        with self._errors(f"upload of {name}"):
            if self.storage.exists(rel):
                raise BackupExistsError(f"{name} already exists on target {self.name!r}; backups are never overwritten")
            if self._is_s3():
                sha256, size = self._put_s3(source, rel, progress)
            elif self._path_of(rel) is not None:
                sha256, size = self._put_path(source, rel, progress)
            else:
                sha256, size = self._put_api(source, rel, progress)
            try:
                self._write_sidecar(name, sha256)
            except BaseException:
                self._remove_quietly(rel)
                raise
        return StoredFile(name=name, size=size, modified=datetime.now(UTC), sha256=sha256)

    def _put_s3(self, source: Path, rel: str, progress: Progress | None) -> tuple[str, int]:
        storage, key = self.storage, self._s3_key(rel)
        size = source.stat().st_size
        checksum, sha256, hashed = s3.local_checksums(source, s3.part_size_for(storage, size))
        if hashed != size:
            raise TargetError(f"{source} changed while it was read; nothing was stored — run the backup again")
        s3.upload(storage, source, key, progress=progress)
        try:
            stored, stored_size = s3.stored_checksum(storage, key)
            if stored is None:  # an S3-compatible server that keeps no checksum: read it back once
                with s3.open_stream(storage, key) as f:
                    ok = hash_stream(f) == (size, sha256)
            else:
                ok = stored == checksum and stored_size == size
            if not ok:
                raise TargetError(f"target {self.name!r}: the uploaded copy of {Path(rel).name} differs from its "
                                  "source; it was removed and nothing was stored. Run the backup again")
        except BaseException:
            self._remove_quietly(rel)
            raise
        return sha256, size

    def _put_path(self, source: Path, rel: str, progress: Progress | None) -> tuple[str, int]:
        final = self._path_of(rel)
        assert final is not None
        final.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
        try:
            digest, done = hashlib.sha256(), 0
            with open(source, "rb") as src:
                total = os.fstat(src.fileno()).st_size
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                with os.fdopen(fd, "wb") as out:
                    while block := src.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
                    out.flush()
                    os.fsync(out.fileno())
            with open(tmp, "rb") as f:
                if hash_stream(f) != (done, digest.hexdigest()) or done != total:
                    raise TargetError(f"target {self.name!r}: the copy in {final.parent} does not match its source; "
                                      "nothing was stored")
            publish_no_replace(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), done

    def _put_api(self, source: Path, rel: str, progress: Progress | None) -> tuple[str, int]:
        from django.core.files import File

        with open(source, "rb") as f:
            size, sha256 = hash_stream(f)
        with open(source, "rb") as f:
            saved = self.storage.save(rel, File(_Counting(f, size, progress), name=Path(rel).name))
        if saved != rel:  # the storage chose another name: the name appeared meanwhile
            self._remove_quietly(saved)
            raise BackupExistsError(f"{Path(rel).name} appeared on target {self.name!r} during the upload; "
                                    "it was not overwritten")
        try:
            with self.storage.open(rel, "rb") as f:
                if hash_stream(f) != (size, sha256):
                    raise TargetError(f"target {self.name!r}: the stored copy of {Path(rel).name} differs from its "
                                      "source; it was removed and nothing was stored")
        except BaseException:
            self._remove_quietly(rel)
            raise
        return sha256, size

    def _remove_quietly(self, rel: str) -> None:
        try:
            self.storage.delete(rel)
        except Exception:  # noqa: BLE001 - cleanup after a failure that is being reported already
            pass

    def list(self) -> list[StoredFile]:
        with self._errors("listing"):
            entries = self._entries()
            names = set(entries)
            files = [
                StoredFile(name=n, size=size, modified=modified, sha256=self._read_sidecar(n))
                for n, (size, modified) in entries.items()
                if is_listed_name(n) and sidecar_name(n) in names
            ]
        return sorted(files, key=lambda f: (f.created_at, f.name), reverse=True)

    def _entries(self) -> dict[str, tuple[int, datetime]]:
        """Every file directly in the prefix: name -> (size, modified); a missing folder is empty."""
        storage = self.storage
        if self._is_s3():
            full = self._s3_key(self.prefix + "x")[:-1]
            return {key[len(full):]: (size, modified) for key, size, modified in s3.list_objects(storage, full)}
        try:
            _, files = storage.listdir(self.prefix.rstrip("/"))
        except FileNotFoundError:
            return {}
        out = {}
        for n in files:
            rel = self.prefix + n
            try:
                modified = storage.get_modified_time(rel)
            except NotImplementedError:
                modified = _EPOCH
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            out[n] = (storage.size(rel), modified)
        return out

    def _require_published(self, name: str) -> str:
        """The sidecar's hash; StoredFileMissingError when the backup is absent or was never published."""
        expected = self._read_sidecar(name)
        if expected is None or not self.storage.exists(self._rel(name)):
            raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}")
        return expected

    def open(self, name: str) -> BinaryIO:
        with self._errors(f"opening {name}"):
            self._require_published(name)
            rel = self._rel(name)
            if self._is_s3():
                return s3.open_stream(self.storage, self._s3_key(rel))
            return self.storage.open(rel, "rb")

    def open_ranged(self, name: str) -> BinaryIO:
        """A seekable stream that fetches only the regions read (S3: ranged GETs); other storages' own files."""
        with self._errors(f"opening {name}"):
            self._require_published(name)
            rel = self._rel(name)
            if self._is_s3():
                return s3.open_ranged(self.storage, self._s3_key(rel))
            return self.storage.open(rel, "rb")

    def fetch(self, name: str, local_path: Path) -> Path:
        dest = Path(local_path)
        what = f"{name} on target {self.name!r}"
        with self._errors(f"download of {name}"):
            expected = self._require_published(name)
            rel = self._rel(name)
            if self._is_s3():
                self._fetch_s3(self._s3_key(rel), dest, expected, what)
            else:
                with self.storage.open(rel, "rb") as src:
                    receive_file(src, dest, expected_sha256=expected, what=what)
        return dest

    def _fetch_s3(self, key: str, dest: Path, expected: str, what: str) -> None:
        """boto3's parallel ranged download into a temporary file, then one hash of it (from the page cache);
        published only when the hash matches the sidecar."""
        dest.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if dest.exists():
            raise BackupExistsError(f"{dest} already exists; choose another path (files are never overwritten)")
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "w+b") as out:
                s3.download(self.storage, key, out)
                out.flush()
                os.fsync(out.fileno())
                out.seek(0)
                _, sha256 = hash_stream(out)
            if sha256 != expected:
                raise TargetError(f"{what} does not match its recorded sha256; that copy is damaged "
                                  "(check it with `dbs_validate`, or fetch it from another target)")
            publish_no_replace(tmp, dest)
            fsync_dir(dest.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def verify(self, name: str) -> StoredFile:
        """Re-read the stored file and check it against its sidecar; TargetError when they differ."""
        with self._errors(f"verification of {name}"):
            expected = self._require_published(name)
            with self.open(name) as f:
                size, sha256 = hash_stream(f)
        if expected != sha256:
            raise TargetError(
                f"target {self.name!r}: {name} does not match its recorded sha256 (stored {sha256[:12]}…, expected "
                f"{expected[:12]}…); that copy is damaged — use another copy, or try `dbs_validate` to heal it"
            )
        return StoredFile(name=name, size=size, modified=datetime.now(UTC), sha256=sha256)

    def delete(self, name: str) -> None:
        rel = self._rel(name)
        with self._errors(f"deletion of {name}"):
            if not self.storage.exists(rel):
                raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}")
            self.storage.delete(sidecar_name(rel))  # unpublished first: a half-done delete lists nothing
            self.storage.delete(rel)

    def exists(self, name: str) -> bool:
        with self._errors(f"checking {name}"):
            return self._read_sidecar(name) is not None and self.storage.exists(self._rel(name))

    def local_path(self, name: str) -> Path | None:
        path = self._path_of(self._rel(name))
        return path if path is not None and path.is_file() else None

    # -- leftovers of interrupted uploads -------------------------------------------------------

    def discard(self, name: str) -> list[str]:
        """Remove what an interrupted upload of ``name`` left; a published backup is never touched."""
        rel = self._rel(name)
        removed: list[str] = []
        with self._errors(f"removing the leftovers of {name}"):
            if self._is_s3():
                removed += s3.abort_uploads(self.storage, self._s3_key(rel), key=self._s3_key(rel))
            path = self._path_of(rel)
            if path is not None and path.parent.is_dir():
                for leftover in path.parent.glob(f".{path.name}.*.part"):
                    leftover.unlink(missing_ok=True)
                    removed.append(str(leftover))
            if self._read_sidecar(name) is None and self.storage.exists(rel):
                self.storage.delete(rel)
                removed.append(rel)
        return removed

    def sweep(self, older_than: timedelta) -> list[str]:
        """Remove leftovers of interrupted uploads older than ``older_than`` (see the module docstring)."""
        cutoff = datetime.now(UTC) - older_than
        removed: list[str] = []
        with self._errors("removing the leftovers of interrupted uploads"):
            if self._is_s3():
                full = self._s3_key(self.prefix + "x")[:-1]
                removed += s3.abort_uploads(self.storage, full, before=cutoff)
            entries = self._entries()
            for n, (_, modified) in entries.items():
                stale = modified < cutoff
                if n.startswith(".") and n.endswith(".part") and stale:
                    self._remove_quietly(self.prefix + n)
                    removed.append(self.prefix + n)
                elif is_listed_name(n) and sidecar_name(n) not in entries and stale:
                    self._remove_quietly(self.prefix + n)
                    removed.append(self.prefix + n)
        return removed


def _is_missing(exc: BaseException) -> bool:
    described = getattr(exc, "response", None)
    if isinstance(described, dict):
        status = described.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status == 404 or described.get("Error", {}).get("Code") in ("404", "NoSuchKey")
    return False


class _Counting:
    """A file's ``read`` that reports progress in bytes (``Storage.save`` reads through ``File.chunks``)."""

    def __init__(self, f: BinaryIO, total: int, progress: Progress | None) -> None:
        self._f, self._total, self._progress, self._done = f, total, progress, 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._done += len(data)
        if self._progress is not None and data:
            self._progress(self._done, self._total)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._f.seek(offset, whence)
        self._done = position
        return position

    def tell(self) -> int:
        return self._f.tell()

    @property
    def size(self) -> int:
        return self._total

    def close(self) -> None:
        self._f.close()
