"""Where sealed files live: a local folder or an SFTP server.

Every target offers the same small surface (:class:`Target`), so creating,
listing, downloading, pruning and drilling never care where the bytes are.
Nothing here holds a secret: SFTP targets name key and known_hosts files.

A local target also offers ``adopt(path, name, sha256)``: a file the caller
has just written and verified is hard-linked in rather than copied (the
default path of every backup). Callers look for it with ``getattr`` and fall
back to ``put`` plus ``verify``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class StoredFile:
    name: str  # file name inside the target, e.g. "dbs-20261123T020000123456Z-logical.dbs"
    size: int
    modified: datetime  # aware, UTC
    sha256: str | None  # from the sidecar/verification when known

    @property
    def created_at(self) -> datetime:
        """When the backup was made: from its name (the same on every copy), else the file's mtime."""
        from dbs_admin.targets.naming import parse_backup_file_name

        parsed = parse_backup_file_name(self.name)
        return parsed[0] if parsed else self.modified


class Target(Protocol):
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

    def fetch(self, name: str, local_path: Path) -> Path:
        """Copy the file to ``local_path`` (atomically) and return it."""

    def verify(self, name: str) -> StoredFile:
        """Re-read the stored file and compare it with its ``.sha256`` sidecar (TargetError on mismatch)."""

    def delete(self, name: str) -> None:
        """Remove the file and its sidecar (StoredFileMissingError when there is no such file)."""

    def exists(self, name: str) -> bool: ...

    def local_path(self, name: str) -> Path | None:
        """The file's path when the target is a local folder, else None."""


def get_target(name: str | None = None) -> Target:
    """The target called ``name`` in ``DBS_ADMIN["TARGETS"]`` (default: ``DEFAULT_TARGET``)."""
    from dbs_admin.targets.registry import get_target as _impl

    return _impl(name)


def iter_targets() -> Iterator[Target]:
    from dbs_admin.targets.registry import iter_targets as _impl

    return _impl()
