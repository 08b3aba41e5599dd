"""Repositories on SFTP servers and S3 buckets: ``ObjectStore`` implementations over the existing targets.

Why here and not in ``sealed.repo``: the sealed layer knows nothing of
paramiko, Django storages or boto3; these stores borrow the connection,
retry and error handling of ``SftpTarget`` and ``StorageTarget`` (one line
naming the target, transient failures retried with backoff) and offer the
six operations a repository needs.

Publication is atomic on both, and verified after writing, as each target
does for a backup file:

* SFTP: the object is uploaded under a hidden ``.<name>.<random>.part``
  name, read back once and hashed, then renamed into place. A plain SFTP
  rename fails when the destination exists (OpenSSH uses ``link``), so a
  name is never overwritten; healing in place (``replace=True``) uses
  ``posix-rename@openssh.com`` where the server offers it. One connection is
  kept for the store's life (a backup makes hundreds of small requests) and
  reopened when it drops.
* S3: a PutObject is atomic (the object appears whole or not at all) and
  carries a SHA-256 checksum the server checks on arrival; ``IfNoneMatch``
  (conditional write) refuses to overwrite an existing name where the server
  supports it, else a HEAD just before the PUT narrows the window (names of
  packs, index objects and locks are random, so only two snapshots given the
  same name could meet there).
* A Django storage whose files are on this machine (``FileSystemStorage``)
  is simply a ``DirectoryStore`` in its folder; other storages are refused
  (their API has no atomic, no-overwrite publication).

Reading an object for the container's readers fetches it whole into an
anonymous local temporary file (one request; packs are a few MiB) and
reads from there; ``get_range`` is a ranged read where only a range is needed.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import secrets
import shutil
import stat
import tempfile
import weakref
from pathlib import Path
from typing import Any, BinaryIO

from dbs_admin.sealed.errors import DestinationExistsError
from dbs_admin.sealed.repo.store import DirectoryStore, check_name
from dbs_admin.targets.base import CHUNK
from dbs_admin.targets.errors import BackupExistsError, TargetError


def _scratch() -> tuple[Path, Any]:
    """A local scratch folder for objects before upload, removed when its store is garbage."""
    path = Path(tempfile.mkdtemp(prefix="dbs-repo-"))
    return path, lambda: shutil.rmtree(path, ignore_errors=True)


def _is_part(name: str) -> bool:
    return name.startswith(".") and name.endswith(".part")


class SftpStore:
    """A repository in a folder of an SFTP server (see the module docstring)."""

    def __init__(self, target: Any) -> None:
        from dbs_admin.targets.sftp import _channel_lost, _ConnectionLost

        self.target = target
        self._lost, self._channel_lost = _ConnectionLost, _channel_lost
        self._conn: dict[str, Any] = {}
        self._dirs: set[str] = set()
        self._staging, cleanup = _scratch()
        self._finalizer = weakref.finalize(self, _close_all, self._conn, cleanup)

    def __repr__(self) -> str:
        return f"SftpStore({self.target.url!r})"

    def close(self) -> None:
        _close_all(self._conn, lambda: None)

    # -- connection ------------------------------------------------------------------------------------

    def _sftp(self) -> Any:
        sftp = self._conn.get("sftp")
        if sftp is not None and not self._channel_lost(sftp):
            return sftp
        _close_all(self._conn, lambda: None)
        client = self.target._client()
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.target.timeout)
        except BaseException:
            client.close()
            raise
        self._conn.update(client=client, sftp=sftp)
        return sftp

    def _call(self, what: str, fn: Any) -> Any:
        """``fn(sftp)`` with the target's retries; a dropped connection is reopened for the next attempt."""

        def attempt(n: int) -> Any:
            sftp = self._sftp()
            try:
                return fn(sftp, n)
            except (OSError, EOFError) as exc:
                if self._channel_lost(sftp):
                    _close_all(self._conn, lambda: None)
                    raise self._lost(f"{type(exc).__name__}: {exc}") from exc
                raise

        return self.target._retrying(what, attempt)

    def _path(self, name: str) -> str:
        return posixpath.join(self.target.path, check_name(name)) if name else self.target.path

    # -- ObjectStore -----------------------------------------------------------------------------------

    def staging_dir(self) -> Path:
        return self._staging

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/")

        def walk(sftp: Any, rel: str, out: list[str]) -> None:
            try:
                entries = sftp.listdir_attr(self._path(rel))
            except FileNotFoundError:
                return
            for entry in entries:
                child = f"{rel}/{entry.filename}" if rel else entry.filename
                if _is_part(entry.filename) or child.split("/")[0] == "tmp":
                    continue
                if stat.S_ISDIR(entry.st_mode or 0):
                    walk(sftp, child, out)
                else:
                    out.append(child)

        def attempt(sftp: Any, n: int) -> list[str]:
            attrs = _stat(sftp, self._path(prefix))
            if attrs is None or not stat.S_ISDIR(attrs.st_mode or 0):
                return []
            out: list[str] = []
            walk(sftp, prefix, out)
            return sorted(out)

        return self._call(f"listing {prefix or 'the repository'}", attempt)

    def size(self, name: str) -> int:
        def attempt(sftp: Any, n: int) -> int:
            return int(sftp.stat(self._path(name)).st_size or 0)

        return self._call(f"checking {name}", attempt)

    def get(self, name: str) -> bytes:
        def attempt(sftp: Any, n: int) -> bytes:
            with sftp.open(self._path(name), "rb") as f:
                f.prefetch()
                return f.read()

        return self._call(f"reading {name}", attempt)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        def attempt(sftp: Any, n: int) -> bytes:
            with sftp.open(self._path(name), "rb") as f:
                return b"".join(f.readv([(offset, length)])) if length else b""

        return self._call(f"reading {name}", attempt)

    def open(self, name: str) -> BinaryIO:
        def attempt(sftp: Any, n: int) -> BinaryIO:
            out = tempfile.TemporaryFile(dir=self._staging)
            try:
                sftp.getfo(self._path(name), out, prefetch=True)
                out.seek(0)
            except BaseException:
                out.close()
                raise
            return out

        return self._call(f"reading {name}", attempt)

    def _ensure_dirs(self, sftp: Any, folder: str) -> None:
        if folder in self._dirs:
            return
        parts = [p for p in folder.split("/") if p]
        current = "/" if folder.startswith("/") else ""
        for part in parts:
            current = posixpath.join(current, part) if current else part
            if current in self._dirs:
                continue
            attrs = _stat(sftp, current)
            if attrs is None:
                try:
                    sftp.mkdir(current, 0o700)
                except OSError:
                    if _stat(sftp, current) is None:  # another writer may have made it meanwhile
                        raise
            self._dirs.add(current)
        self._dirs.add(folder)

    def put_atomic(self, name: str, local_file: Path, *, replace: bool = False) -> None:
        final = self._path(name)
        sent: dict[str, Any] = {}

        def attempt(sftp: Any, n: int) -> None:
            self._ensure_dirs(sftp, posixpath.dirname(final))
            if not replace:
                if _stat(sftp, final) is not None:
                    if n > 0 and sent and self.target._remote_hash(sftp, final) == (sent["size"], sent["sha256"]):
                        return  # our own upload, finished before the connection dropped
                    raise DestinationExistsError(f"repository object {name} already exists")
                try:
                    self.target._upload(sftp, Path(local_file), final, None, sent)
                except BackupExistsError:
                    raise DestinationExistsError(f"repository object {name} already exists") from None
                return
            tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{secrets.token_hex(6)}.part")
            self.target._upload(sftp, Path(local_file), tmp, None, sent)
            try:
                sftp.posix_rename(tmp, final)
            except OSError:  # no posix-rename extension: remove, then rename (a short window without it)
                _remove_quietly(sftp, final)
                sftp.rename(tmp, final)

        self._call(f"upload of {name}", attempt)

    def delete(self, name: str) -> None:
        def attempt(sftp: Any, n: int) -> None:
            try:
                sftp.remove(self._path(name))
            except FileNotFoundError:
                pass

        self._call(f"deletion of {name}", attempt)


def _stat(sftp: Any, path: str) -> Any:
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None


def _remove_quietly(sftp: Any, path: str) -> None:
    try:
        sftp.remove(path)
    except OSError:
        pass


def _close_all(conn: dict, cleanup: Any) -> None:
    client = conn.pop("client", None)
    conn.pop("sftp", None)
    if client is not None:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing a connection that may already be gone must not raise
            pass
    cleanup()


class _Exists(TargetError):
    """Internal: the name is taken (a TargetError so that the storage's error wrapper lets it through)."""


class S3Store:
    """A repository under a prefix of an S3 bucket, through django-storages' S3 storage (module docstring)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self._storage = target.storage
        self._conditional: bool | None = None  # whether the server honours IfNoneMatch (learnt on first PUT)
        self._staging, cleanup = _scratch()
        self._finalizer = weakref.finalize(self, cleanup)

    def __repr__(self) -> str:
        return f"S3Store({self.target.alias!r}, {self.target.prefix!r})"

    def _key(self, name: str) -> str:
        from dbs_admin.targets import s3

        return s3.key_of(self._storage, self.target.prefix + check_name(name))

    def _client(self) -> Any:
        return self._storage.connection.meta.client

    def _bucket(self) -> str:
        return self._storage.bucket_name

    def staging_dir(self) -> Path:
        return self._staging

    def list(self, prefix: str) -> list[str]:
        from dbs_admin.targets import s3

        prefix = prefix.rstrip("/")
        base = s3.key_of(self._storage, self.target.prefix + "x")[:-1]
        full = base + (prefix + "/" if prefix else "")
        out = []
        with self.target._errors(f"listing {prefix or 'the repository'}"):
            paginator = self._client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket(), Prefix=full):
                for item in page.get("Contents", []):
                    rel = item["Key"][len(base):]
                    if rel.split("/")[0] != "tmp" and not _is_part(rel.rsplit("/", 1)[-1]):
                        out.append(rel)
        return sorted(out)

    def _missing(self, exc: BaseException) -> bool:
        from dbs_admin.targets.storage import _is_missing

        return _is_missing(exc)

    def size(self, name: str) -> int:
        key = self._key(name)
        with self.target._errors(f"checking {name}"):
            head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"repository object {name} does not exist")
        return int(head["ContentLength"])

    def _head(self, key: str, **extra: Any) -> dict | None:
        try:
            return self._client().head_object(Bucket=self._bucket(), Key=key, **extra)
        except Exception as exc:
            if self._missing(exc):
                return None
            raise

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self.target._errors(f"reading {name}"):
            return self._client().get_object(Bucket=self._bucket(), Key=self._key(name),
                                             Range=f"bytes={offset}-{offset + length - 1}")["Body"].read()

    def get(self, name: str) -> bytes:
        with self.target._errors(f"reading {name}"):
            return self._client().get_object(Bucket=self._bucket(), Key=self._key(name))["Body"].read()

    def open(self, name: str) -> BinaryIO:
        out = tempfile.TemporaryFile(dir=self._staging)
        try:
            with self.target._errors(f"reading {name}"):
                body = self._client().get_object(Bucket=self._bucket(), Key=self._key(name))["Body"]
                while block := body.read(CHUNK):
                    out.write(block)
            out.seek(0)
        except BaseException:
            out.close()
            raise
        return out

    def put_atomic(self, name: str, local_file: Path, *, replace: bool = False) -> None:
        data = Path(local_file).read_bytes()  # objects are a few MiB at most (packs), one PutObject each
        digest = hashlib.sha256(data).digest()
        checksum = base64.b64encode(digest).decode("ascii")
        key = self._key(name)
        params: dict[str, Any] = {"Bucket": self._bucket(), "Key": key, "Body": data,
                                  "ContentType": "application/octet-stream", "ChecksumSHA256": checksum}
        try:
            self._put(name, key, params, data, digest, checksum, replace)
        except _Exists:
            raise DestinationExistsError(f"repository object {name} already exists") from None

    def _put(self, name: str, key: str, params: dict, data: bytes, digest: bytes, checksum: str,
             replace: bool) -> None:
        client = self._client()
        with self.target._errors(f"upload of {name}"):
            if not replace:
                if self._exists(key):
                    raise _Exists
                if self._conditional is not False:
                    try:
                        client.put_object(**params, IfNoneMatch="*")
                        self._conditional = True
                    except Exception as exc:
                        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
                        if status in (409, 412):
                            raise _Exists from None
                        if status != 501:
                            raise
                        self._conditional = False
                if self._conditional is False:
                    client.put_object(**params)
            else:
                client.put_object(**params)
            head = self._head(key, ChecksumMode="ENABLED") or {}
            stored = (head.get("ChecksumSHA256") or "").split("-")[0]
            ok = int(head.get("ContentLength", -1)) == len(data) and (
                stored == checksum if stored else hashlib.sha256(self.get(name)).digest() == digest)
            if not ok:
                client.delete_object(Bucket=self._bucket(), Key=key)
                raise TargetError(f"target {self.target.name!r}: the stored copy of repository object {name} "
                                  "differs from what was sent; it was removed")

    def _exists(self, key: str) -> bool:
        return self._head(key) is not None

    def delete(self, name: str) -> None:
        with self.target._errors(f"deletion of {name}"):
            self._client().delete_object(Bucket=self._bucket(), Key=self._key(name))


def store_for(target: Any) -> Any:
    """The ObjectStore of a file target (SFTP or storage) holding a repository; TargetError if it cannot."""
    kind = getattr(target, "kind", None)
    if kind == "sftp":
        return SftpStore(target)
    if kind == "storage":
        from dbs_admin.targets import s3

        storage = target.storage
        if s3.is_s3(storage):
            return S3Store(target)
        folder = target._path_of(target.prefix.rstrip("/") or ".")
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            return DirectoryStore(folder)
        raise TargetError(f"target {target.name!r}: storage {target.alias!r} ({type(storage).__name__}) cannot hold "
                          "a repository: it needs atomic, no-overwrite publication (S3, or a folder on this machine)")
    raise TargetError(f"target {target.name!r}: a repository cannot live on a {kind} target")


__all__ = ["SftpStore", "S3Store", "store_for"]
