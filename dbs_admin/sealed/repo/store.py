"""Where a repository's objects live: a tiny storage interface, and the directory implementation.

Why an interface this small (list, get, get_range, size, put_atomic, delete):
every place a repository can live (a local folder, an SFTP server, any Django
storage such as S3) can offer exactly these, and nothing in the repository
needs more. Objects are immutable once published: ``put_atomic`` publishes a
fully written and verified local file under its final name in one step (temp
name + rename for a folder), so a reader never sees half an object, and a
name is never overwritten unless ``replace=True`` (healing an object in place).

Object names are relative POSIX paths such as ``packs/3f…`` or ``keys``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Protocol

from dbs_admin.sealed.atomic import fsync_directory
from dbs_admin.sealed.errors import DestinationExistsError, UsageError

STAGING = "tmp"  # scratch names inside the repository; never listed as objects


class ObjectStore(Protocol):
    """The operations a repository needs from where it is stored."""

    def list(self, prefix: str) -> list[str]: ...

    def get(self, name: str) -> bytes: ...

    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    def size(self, name: str) -> int: ...

    def put_atomic(self, name: str, local_file: Path, *, replace: bool = False) -> None: ...

    def delete(self, name: str) -> None: ...

    def staging_dir(self) -> Path: ...

    def open(self, name: str) -> BinaryIO: ...


def check_name(name: str) -> str:
    """Refuse names that could escape the repository or collide with scratch files."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == STAGING:
        raise UsageError(f"invalid repository object name {name!r}")
    return name


class RangeFile:
    """A read-only, seekable file over ``get_range`` (what the container's readers need), for remote stores."""

    def __init__(self, store: ObjectStore, name: str):
        self._store, self._name = store, name
        self._size = store.size(name)
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else self._size + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = max(0, min(n, self._size - self._pos))
        data = self._store.get_range(self._name, self._pos, n) if n else b""
        self._pos += len(data)
        return data

    def close(self) -> None:
        pass

    def __enter__(self) -> RangeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DirectoryStore:
    """A repository in a local folder; publication is link/rename in the same file system, then fsync."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def staging_dir(self) -> Path:
        path = self.root / STAGING
        path.mkdir(parents=True, exist_ok=True)
        return path

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            out.extend(f"{rel}/{f}" for f in files if ".tmp-" not in f)
        return sorted(out)

    def get(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        with open(self._path(name), "rb") as f:
            return os.pread(f.fileno(), length, offset)

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")

    def put_atomic(self, name: str, local_file: Path, *, replace: bool = False) -> None:
        dest = self._path(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f"{dest.name}.tmp-{secrets.token_hex(6)}"
        try:
            try:
                os.link(local_file, tmp)  # same file system (the staging folder): no copy
            except OSError:
                shutil.copyfile(local_file, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            if replace:
                os.replace(tmp, dest)
            else:
                try:
                    os.link(tmp, dest)
                except FileExistsError:
                    raise DestinationExistsError(f"repository object {name} already exists") from None
            fsync_directory(dest.parent, best_effort=False)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return
        fsync_directory(self._path(name).parent, best_effort=False)
