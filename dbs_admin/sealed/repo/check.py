"""Validating and healing a repository: the container's ``verify`` and ``heal``, object by object.

``check_repository(store)`` needs no key: every object (keys, packs, index
objects, snapshot records) is verified like a ``.dbs`` file (metadata regions,
data and parity hashes of both copies, and whether damaged blocks can be
repaired). ``check_repository(store, repo=...)`` also opens, with the key,
every snapshot and index object and, with ``read_data``, decrypts every chunk
of every pack and checks it against its keyed id (restic's ``--read-data``).

``heal_repository(store)`` rewrites each damaged but recoverable object with
the container's ``heal`` (byte-exact contents, fresh redundancy, verified,
then published over the old one by rename), and raises UnrecoverableError
naming every object that cannot be healed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dbs_admin.sealed.errors import SealedError, UnrecoverableError
from dbs_admin.sealed.heal import heal
from dbs_admin.sealed.repo.keyfile import KEYS_NAME
from dbs_admin.sealed.repo.objects import SealedObject
from dbs_admin.sealed.repo.packs import DICT_PREFIX, PACK_PREFIX, ChunkOpener, pack_entries
from dbs_admin.sealed.repo.records import INDEX_PREFIX, SNAPSHOT_PREFIX
from dbs_admin.sealed.repo.repository import Repository
from dbs_admin.sealed.repo.store import ObjectStore
from dbs_admin.sealed.verify import verify


@dataclass
class RepositoryCheck:
    """What ``check_repository`` found: objects checked, damaged (recoverable), lost, and errors by object."""

    objects: int = 0
    damaged: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    chunks_read: int = 0
    snapshots: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.errors

    def as_dict(self) -> dict:
        return {"ok": self.ok, "objects": self.objects, "damaged": self.damaged, "lost": self.lost,
                "errors": self.errors, "chunks_read": self.chunks_read, "snapshots": self.snapshots}


def object_names(store: ObjectStore) -> list[str]:
    names = [KEYS_NAME] if KEYS_NAME in store.list("") or _has(store, KEYS_NAME) else []
    for prefix in (PACK_PREFIX, DICT_PREFIX, INDEX_PREFIX, SNAPSHOT_PREFIX):
        names.extend(store.list(prefix))
    return names


def _has(store: ObjectStore, name: str) -> bool:
    try:
        store.size(name)
        return True
    except OSError:
        return False


@contextmanager
def local_copy(store: ObjectStore, name: str) -> Iterator[Path]:
    """A local path holding the object (the store's own file when it is a folder)."""
    root = getattr(store, "root", None)
    if root is not None:
        yield Path(root) / name
        return
    with tempfile.TemporaryDirectory(dir=store.staging_dir()) as tmp:
        path = Path(tmp) / "object"
        path.write_bytes(store.get(name))
        yield path


def check_repository(store: ObjectStore, *, repo: Repository | None = None,
                     read_data: bool = False) -> RepositoryCheck:
    report = RepositoryCheck()
    for name in object_names(store):
        report.objects += 1
        try:
            with local_copy(store, name) as path:
                found = verify(path)
        except SealedError as exc:
            report.lost.append(name)
            report.errors[name] = str(exc)
            continue
        if not found.ok:
            report.lost.append(name)
            report.errors[name] = found.error or "damaged beyond repair"
        elif not found.intact:
            report.damaged.append(name)
    if repo is None:
        return report
    _check_with_key(store, repo, report, read_data)
    return report


def _check_with_key(store: ObjectStore, repo: Repository, report: RepositoryCheck, read_data: bool) -> None:
    try:
        index = repo.index
    except SealedError as exc:
        report.errors["index"] = str(exc)
        return
    for name in repo.snapshot_names():
        try:
            snap = repo.snapshot(name)
            for stream in snap.streams:
                missing = [cid for cid in repo.stream_ids(snap, stream) if cid not in index]
                if missing:
                    report.errors[SNAPSHOT_PREFIX + name] = (f"stream {stream} needs {len(missing)} chunk(s) no "
                                                             f"index lists, first {missing[0].hex()}")
            report.snapshots += 1
        except SealedError as exc:
            report.errors[SNAPSHOT_PREFIX + name] = str(exc)
    if not read_data:
        return
    for name in store.list(PACK_PREFIX):
        if name in report.lost:
            continue
        try:
            with SealedObject(store, name, kind="pack", **repo._kw()) as obj:
                opener = ChunkOpener(obj, repo.dictionary)
                data = obj.read_all()
                for cid, entry in pack_entries(obj).items():
                    chunk = opener.open(cid, entry, data[entry.offset : entry.offset + entry.length])
                    if repo.chunk_id(chunk) != cid:
                        raise SealedError(f"chunk {cid.hex()} does not match its id")
                    report.chunks_read += 1
        except SealedError as exc:
            report.errors[name] = str(exc)


@dataclass
class RepositoryHeal:
    healed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def heal_repository(store: ObjectStore) -> RepositoryHeal:
    """Heal every damaged object in place; raise UnrecoverableError naming the objects beyond repair."""
    found = check_repository(store)
    result = RepositoryHeal(lost=list(found.lost))
    for name in found.damaged:
        with local_copy(store, name) as path, tempfile.TemporaryDirectory(dir=store.staging_dir()) as tmp:
            out = Path(tmp) / "healed"
            heal(path, out)
            store.put_atomic(name, out, replace=True)
        result.healed.append(name)
    if result.lost:
        raise UnrecoverableError(
            f"{len(result.lost)} repository object(s) are damaged beyond repair: {', '.join(result.lost)}"
            + (f" (healed {len(result.healed)} other(s))" if result.healed else ""),
            regions=tuple(result.lost))
    return result
