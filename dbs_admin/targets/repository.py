"""A target that holds a repository (``"format": "repository"``) instead of one sealed file per backup.

Why a target of its own rather than a flag on every target: what it holds
are snapshots inside one deduplicated repository, not files, so only listing
is shared with the file targets; backups and restores go through
``backups.repository``, which opens the repository with the key. Listing
needs no key: each snapshot's name, and what it added (its record plus the
packs and index objects named after it), are visible from object names and
sizes alone.

The repository lives in a local folder (``sealed.repo.DirectoryStore``), in
a folder of an SFTP server or under a prefix of an S3 bucket
(``targets.repository_stores``), all behind the same ``ObjectStore``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from dbs_admin.sealed.repo import DirectoryStore, ObjectStore, keyless_listing
from dbs_admin.sealed.repo.prune import forget
from dbs_admin.targets.base import DIR_MODE, StoredFile, is_repository  # noqa: F401 - its callers' old home
from dbs_admin.targets.errors import StoredFileMissingError, TargetError
from dbs_admin.targets.naming import parse_backup_file_name


class RepositoryTarget:
    """Snapshots in a repository; see the module docstring."""

    format = "repository"

    def __init__(self, name: str, kind: str, store: ObjectStore) -> None:
        self.name, self.kind, self.store = name, kind, store

    def __repr__(self) -> str:
        return f"<RepositoryTarget {self.name!r} {self.store!r}>"

    def list(self) -> list[StoredFile]:
        """Snapshots, newest first; ``size`` is what each added to the repository."""
        try:
            listing = keyless_listing(self.store)
        except OSError as exc:
            raise TargetError(f"target {self.name!r}: cannot list the repository: {exc}") from None
        out = []
        for name, added in listing:
            parsed = parse_backup_file_name(name)
            when = parsed[0] if parsed else datetime.fromtimestamp(0, UTC)
            out.append(StoredFile(name=name, size=added, modified=when, sha256=None))
        return sorted(out, key=lambda s: s.created_at, reverse=True)

    def totals(self) -> dict[str, int]:
        """Per snapshot, the repository's size once it was added (the running sum of what each added)."""
        out, running = {}, 0
        for name, added in keyless_listing(self.store):
            running += added
            out[name] = running
        return out

    def total_size(self) -> int:
        """Bytes of the whole repository."""
        from dbs_admin.sealed.repo.check import object_names

        return sum(self.store.size(n) for n in object_names(self.store))

    def exists(self, name: str) -> bool:
        return any(s.name == name for s in self.list())

    def local_path(self, name: str) -> Path | None:
        return None

    def _not_a_file(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TargetError(f"target {self.name!r} is a repository: it holds snapshots, not sealed files "
                          "(restore a snapshot by name with --target, list them with dbs_list)")

    put = open = open_ranged = fetch = verify = _not_a_file

    def delete(self, name: str) -> None:
        """Forget a snapshot (no key needed; never damages another). Its space returns at the next collection."""
        if not self.exists(name):
            raise StoredFileMissingError(f"target {self.name!r} holds no snapshot named {name!r}")
        forget(self.store, name)


def local_repository(name: str, path: str | os.PathLike[str]) -> RepositoryTarget:
    folder = Path(path).expanduser()
    try:
        folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise TargetError(f"target {name!r}: cannot create {folder}: {exc.strerror}") from None
    return RepositoryTarget(name, "local", DirectoryStore(folder))


def remote_repository(name: str, target: Any) -> RepositoryTarget:
    """A repository in an SFTP or storage target's place (its settings, connection and error handling)."""
    from dbs_admin.targets.repository_stores import store_for

    return RepositoryTarget(name, target.kind, store_for(target))

