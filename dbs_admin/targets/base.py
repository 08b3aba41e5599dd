"""What every target shares: the stored-file record and interface, name rules, the ``.sha256`` sidecar, hashing.

Why a sidecar: it records the hash the upload was verified against next to
the file, in ``sha256sum`` format, so an operator can check a copy with
standard tools, and listing can show the hash without reading the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dbs_admin.sealed.atomic import fsync_directory
from dbs_admin.targets.errors import BackupExistsError, TargetError
from dbs_admin.targets.naming import parse_backup_file_name

CHUNK = 1024 * 1024
FILE_MODE = 0o600
DIR_MODE = 0o700
SIDECAR_SUFFIX = ".sha256"
# A stored name is one path component, visible (no leading dot: temporary
# files start with one), without separators or control characters.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)`` called while a file is copied."""


class SeekableReader(io.RawIOBase):
    """The position bookkeeping of a read-only view of a remote file of known ``size`` (ranged reads): the
    subclasses (an SFTP file, an S3 object) only say how bytes at ``self._pos`` are fetched (``readinto``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, b: Any) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class StoredFile:
    name: str  # file name inside the target, e.g. "dbs-20261123T020000123456Z-logical.dbs"
    size: int
    modified: datetime  # aware, UTC
    sha256: str | None  # from the sidecar/verification when known

    @property
    def created_at(self) -> datetime:
        """When the backup was made: from its name (the same on every copy), else the file's mtime."""
        parsed = parse_backup_file_name(self.name)
        return parsed[0] if parsed else self.modified


class Target(Protocol):
    """What every kind of target offers (local, sftp, storage).

    Optional extras, looked up with ``getattr``: ``adopt(path, name, sha256)``
    (a local folder takes a verified file in by a hard link), ``verifies_on_put``
    (``put`` checked the stored copy itself: no second read), ``discard(name)``
    and ``sweep(older_than)`` (remove what an interrupted upload left remotely).
    """

    name: str

    def put(self, local_path: Path, name: str, *, progress: Callable[[int, int], None] | None = None) -> StoredFile:
        """Store ``local_path`` as ``name``: temporary name, verify size and hash, rename.

        Refuses an existing name (BackupExistsError); never overwrites.
        ``progress(bytes_done, bytes_total)`` is called while copying.
        """

    def list(self) -> list[StoredFile]:
        """Sealed files held by the target, newest first."""

    def open(self, name: str) -> BinaryIO:
        """A readable binary stream of the file (used for downloads and restores)."""

    def open_ranged(self, name: str) -> BinaryIO:
        """A seekable stream that fetches only the regions read (reading a backup's metadata, not its data).

        Optional: callers fall back to ``open`` for a target without it."""

    def fetch(self, name: str, local_path: Path) -> Path:
        """Copy the file to ``local_path`` (atomically) and return it."""

    def verify(self, name: str) -> StoredFile:
        """Re-read the stored file and compare it with its ``.sha256`` sidecar (TargetError on mismatch)."""

    def delete(self, name: str) -> None:
        """Remove the file and its sidecar (StoredFileMissingError when there is no such file)."""

    def exists(self, name: str) -> bool: ...

    def local_path(self, name: str) -> Path | None:
        """The file's path when the target is a local folder, else None."""


def is_repository(target: object) -> bool:
    """A target holding a repository of incremental snapshots, not one sealed file per backup. Here, not in
    ``targets.repository``: every backup and restore asks, and that module imports the repository's code."""
    return getattr(target, "format", None) == "repository"


def check_name(name: str) -> str:
    """Refuse names that could escape the target folder or clash with temporary and sidecar files."""
    if not _NAME_RE.fullmatch(name) or ".." in name or name.endswith(SIDECAR_SUFFIX):
        raise TargetError(
            f"{name!r} is not a valid backup file name: use one path component of letters, digits, '.', '_' "
            f"and '-', not starting with '.' and not ending in {SIDECAR_SUFFIX!r}"
        )
    return name


def is_listed_name(name: str) -> bool:
    """Whether a file in a target folder is a sealed backup (not a temporary file or a sidecar)."""
    return name.endswith(".dbs") and not name.startswith(".") and _NAME_RE.fullmatch(name) is not None


def sidecar_name(name: str) -> str:
    return name + SIDECAR_SUFFIX


def sidecar_text(name: str, sha256: str) -> bytes:
    """``sha256sum`` format, so ``sha256sum -c NAME.sha256`` checks the copy."""
    return f"{sha256}  {name}\n".encode("ascii")


def parse_sidecar(data: bytes) -> str | None:
    """The hash recorded in a sidecar, or None when it is unreadable."""
    try:
        first = data.decode("ascii").split()[0].lower()
    except (UnicodeDecodeError, IndexError):
        return None
    return first if _HEX64.fullmatch(first) else None


def hash_stream(stream: BinaryIO, chunk: int = CHUNK) -> tuple[int, str]:
    """``(size, sha256 hex)`` of everything left in ``stream``, in constant memory."""
    digest = hashlib.sha256()
    size = 0
    while block := stream.read(chunk):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable; an error fails the operation."""
    fsync_directory(path, best_effort=False)


def temp_path(folder: Path, name: str) -> Path:
    """A hidden name in the same folder (same filesystem, so publishing is atomic); never listed."""
    return folder / f".{name}.{secrets.token_hex(6)}.part"


def publish_no_replace(tmp: Path, final: Path) -> None:
    """Give ``tmp`` its final name without ever replacing an existing file.

    ``link`` fails when the name exists, where ``rename`` would silently
    replace it; filesystems without hard links fall back to a checked rename.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise BackupExistsError(f"{final} already exists; backups are never overwritten") from None
    except OSError:
        if final.exists():
            raise BackupExistsError(f"{final} already exists; backups are never overwritten") from None
        os.rename(tmp, final)
    else:
        tmp.unlink()


def receive_file(src: BinaryIO, dest: Path, *, expected_sha256: str | None, what: str) -> tuple[int, str]:
    """Copy ``src`` to a new local file ``dest`` atomically, checking the hash when one is known.

    Returns ``(size, sha256)``. On any failure nothing is left at ``dest``.
    """
    folder = dest.parent if str(dest.parent) else Path(".")
    try:
        folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise TargetError(f"cannot create folder {folder} for {dest.name}: {exc.strerror}") from exc
    if dest.exists():
        raise BackupExistsError(f"{dest} already exists; choose another path (files are never overwritten)")
    tmp = temp_path(folder, dest.name)
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            while block := src.read(CHUNK):
                out.write(block)
                digest.update(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise TargetError(
                f"{what} does not match its recorded sha256; that copy is damaged "
                "(check it with `dbs_validate`, or fetch it from another target)"
            )
        publish_no_replace(tmp, dest)
        fsync_dir(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()
