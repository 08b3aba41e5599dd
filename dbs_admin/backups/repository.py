"""Backups into a repository target: each backup an incremental snapshot; restores read a snapshot back.

Why here, and this way: the capture (logical or native) is the very same
payload stream a sealed file gets (docs/PAYLOAD.md); this module only cuts
it into chunks so that what did not change deduplicates:

* rows: each ROWS frame (a batch of rows) is split into one frame per row,
  and the record chunker cuts only between rows, so an edited row changes
  about its own chunk (the rows of a table come in primary-key order);
* file and dump bytes (DATA frames after a FILE or DUMP frame): FastCDC over
  that file's frames alone, so a file's chunks do not depend on its neighbours;
* every other frame (head, references, models, trailer) is a record.

Reading a snapshot back gives that payload with consecutive one-row frames
merged into batches again (``sealed.repo.export.SnapshotReader``), and the restore runs exactly as
for a sealed file. The snapshot's record holds the backup's manifest.

A repository is created by its first backup, with that backup's keys; later
backups open it, which needs the passphrase (writing to a repository means
reading its index: a recipients-only host cannot add to it yet).
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack

from dbs_admin.backups import files_cache, payload
from dbs_admin.backups.errors import BackupError, KeyMissingError
from dbs_admin.backups.files_cache import Reused
from dbs_admin.sealed import SealedError
from dbs_admin.sealed.repo import Repository
from dbs_admin.sealed.repo.chunker import RecordChunker, cdc_chunks
from dbs_admin.sealed.repo.export import (
    FILE_LIST,
    MANIFEST_STREAM,
    MARKER,
    PREFIX,
    STREAM,
    SnapshotReader,
    frames,
)
from dbs_admin.sealed.repo.keyfile import KEYS_NAME

_PREFIX = PREFIX
REUSED = MARKER  # the kind _frames gives a files_cache.Reused marker


@dataclass
class SnapshotReport:
    """What ``write_snapshot`` returns in place of a SealReport (the fields ``create`` reads)."""

    name: str
    added_bytes: int
    plaintext_size: int
    key_slots: list
    sha256: str = ""


def _has_repository(target: Any) -> bool:
    try:
        target.store.size(KEYS_NAME)
        return True
    except OSError:
        return False


def open_for_writing(target: Any, keys: dict) -> Repository:
    """The target's repository, created with these keys on first use."""
    if not _has_repository(target):
        return Repository.init(target.store, passphrase=keys.get("passphrase"),
                               recipients=keys.get("recipients") or (), argon2=keys.get("argon2"),
                               allow_weak_argon2=keys.get("allow_weak_argon2", False))
    if not keys.get("passphrase"):
        raise KeyMissingError(f"adding a snapshot to repository target {target.name!r} needs its passphrase (the "
                              "repository's index must be read to deduplicate)")
    return Repository.open(target.store, passphrase=keys["passphrase"])


def _frames(pieces: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``(type, whole frame bytes)`` of a payload stream given as pieces (``sealed.repo.export.frames``); an
    unchanged file's ``files_cache.Reused`` comes through as ``(REUSED, marker)``."""
    try:
        yield from frames(pieces, markers=(Reused,))
    except SealedError as exc:
        raise BackupError(str(exc)) from None


_ROW_HEAD = struct.Struct(">cIB")  # a one-row ROWS frame's prefix and its MessagePack array header (0x91)


def _row_parts(frame: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """A ROWS frame split into one-row ROWS frames, each as ``(prefix, row)``: the row a slice of the batch's
    MessagePack (skipped over, not decoded) and the prefix made for it, so neither is copied to be joined."""
    body = memoryview(frame)[_PREFIX.size :]
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(body) + 16)
    unpacker.feed(body)
    count = unpacker.read_array_header()
    pos = unpacker.tell()
    skip, tell, pack, rows = unpacker.skip, unpacker.tell, _ROW_HEAD.pack, payload.ROWS
    for _ in range(count):
        skip()
        end = tell()
        yield pack(rows, 1 + end - pos, 0x91), body[pos:end]
        pos = end


@dataclass(frozen=True)
class FileStart:
    """In ``payload_chunks``' output: the data chunks of the file ``header`` (a FILE frame's JSON) follow."""

    header: dict


@dataclass(frozen=True)
class FileEnd:
    """In ``payload_chunks``' output: the file's data chunks are over; ``end`` is its END_DATA (size, sha256)."""

    end: dict


def payload_chunks(pieces: Iterable[Any], head: list[bytes]) -> Iterator[Any]:
    """The chunks of a payload stream (see the module docstring); ``head`` receives the magic and HEAD frame.

    The head (which holds the backup's time, so differs every time) is kept in the snapshot record rather
    than in a chunk: a backup in which nothing changed then adds no chunk, hence no pack and no index object.
    Head + the chunks concatenated is the payload. Besides chunks (bytes) it yields ``FileStart`` and
    ``FileEnd`` around a file's own data chunks, and a ``files_cache.Reused`` (ids already stored) in place
    of the data chunks of a file the files cache knows unchanged.
    """
    frames = _frames(pieces)
    for kind, frame in frames:
        head.append(frame)
        if kind == payload.HEAD:
            break
    records = RecordChunker()
    end_data: list[bytes] = []

    def file_data(first: Any) -> Iterator[bytes]:
        pending = [first] if first is not None else []
        for kind, frame in itertools.chain(pending, frames):
            if kind == payload.END_DATA:
                end_data.append(frame)
                return
            if kind != payload.DATA:
                raise BackupError("a file's bytes in the payload are interrupted by another record")
            yield frame

    for kind, frame in frames:
        if kind == payload.ROWS:
            yield from records.feed_pairs(_row_parts(frame))
        elif kind in (payload.FILE, payload.DUMP):
            yield from records.feed(frame)
            yield from records.finish()
            first = next(frames, None)
            if first is not None and first[0] == REUSED:
                yield first[1]
                first = next(frames, (None, b""))
                if first[0] != payload.END_DATA:
                    raise BackupError("a cached file in the payload is not followed by its end record")
                yield from records.feed(first[1])
                continue
            header = json.loads(frame[_PREFIX.size :]) if kind == payload.FILE else None
            if header is not None:
                yield FileStart(header)
            yield from cdc_chunks(file_data(first))
            if not end_data:
                raise BackupError("the backup's payload ended inside a file's bytes")
            end = end_data.pop()
            if header is not None:
                yield FileEnd(json.loads(end[_PREFIX.size :]))
            yield from records.feed(end)
        else:
            yield from records.feed(frame)
    yield from records.finish()


def _files_cache(repo: Repository, writer: Any) -> files_cache.FilesCache:
    from dbs_admin.conf import dbs_settings

    known = writer._known
    return files_cache.FilesCache(files_cache.cache_path(dbs_settings.PRIVATE_ROOT, repo.rkey.repository_id),
                                  repo.rkey.key, known.__contains__)


ID_BATCH = 512  # chunks whose ids are looked up in the index at once


def _store_payload(writer: Any, items: Iterable[Any], cache: files_cache.FilesCache) -> list[bytes]:
    """Add the chunks of ``payload_chunks`` to the snapshot; record read files in the cache; the stream's ids.

    Chunks are added a batch at a time (``SnapshotWriter.add_chunk_batch``: one vectorised index search for the
    batch instead of one per chunk); the batch is emptied before any marker, so ids keep the stream's order."""
    ids: list[bytes] = []
    current: list[bytes] | None = None
    header: dict = {}
    batch: list[bytes] = []

    def flush() -> None:
        if batch:
            added = writer.add_chunk_batch(batch)
            ids.extend(added)
            if current is not None:
                current.extend(added)
            batch.clear()

    for item in items:
        if isinstance(item, (bytes, bytearray, memoryview)):
            writer.plaintext_size += len(item)
            batch.append(item)
            if len(batch) >= ID_BATCH:
                flush()
            continue
        flush()
        if isinstance(item, Reused):
            writer.plaintext_size += item.size
            ids.extend(item.id_list())
        elif isinstance(item, FileStart):
            current, header = [], item.header
        elif isinstance(item, FileEnd):
            if current is not None:
                cache.record(str(header.get("root")), str(header.get("name")), current,
                             int(item.end.get("size", -1)), str(item.end.get("sha256")))
            current = None
    flush()
    return ids


def write_snapshot(target: Any, name: str, body: Iterable[bytes], manifest: dict, keys: dict) -> SnapshotReport:
    """Store one backup's payload as snapshot ``name``; the manifest is read after the body (it completes then).

    ``body`` is consumed with the repository's files cache active (``files_cache``): the capture skips
    reading media files that did not change since the last snapshot read them.
    """
    repo = open_for_writing(target, keys)
    head: list[bytes] = []
    with repo.new_snapshot(name) as writer:  # a failed capture releases the lock (its packs stay unreferenced)
        cache = _files_cache(repo, writer)
        with files_cache.activated(cache):
            writer.set_stream(STREAM, _store_payload(writer, payload_chunks(body, head), cache))
        # The manifest's list of file hashes (large, and the same while the files are) is a stream of its own,
        # so an unchanged list costs nothing again; the rest (small, with the backup's time) is in the record.
        files = json.dumps(manifest.get(FILE_LIST, []), separators=(",", ":")).encode()
        writer.set_stream(MANIFEST_STREAM, writer.add_bytes([files]))
        rest = json.loads(json.dumps({k: v for k, v in manifest.items() if k != FILE_LIST}, default=str))
        info = writer.commit(meta={"head": b"".join(head), "manifest": rest})
    cache.save()  # after the commit: the ids it names are now in the index
    return SnapshotReport(info.name, info.added_bytes, info.plaintext_size, key_slots=key_slots(target))


def key_slots(target: Any) -> list[dict]:
    """The public description of the repository key's slots (kinds, recipient fingerprints; no key needed):
    what the catalogue records for a snapshot, so drills choose the snapshots their key opens as for files."""
    from dbs_admin.sealed import info
    from dbs_admin.sealed.repo.check import local_copy

    try:
        with local_copy(target.store, KEYS_NAME) as path:
            return [{**slot, "repository": True} for slot in info(path)["key_slots"]]
    except (SealedError, OSError):
        return [{"type": "repository"}]


@contextmanager
def open_snapshot(target: Any, name: str, *, passphrase: str | None = None, identity: Any = None
                  ) -> Iterator[SnapshotReader]:
    """Open snapshot ``name`` of a repository target with the key (a wrong key is refused before any read)."""
    try:
        repo = Repository.open(target.store, passphrase=passphrase, identity=identity)
    except SealedError:
        raise
    if name not in repo.snapshot_names():
        raise BackupError(f"target {target.name!r} holds no snapshot named {name!r}; see manage.py dbs_list")
    with SnapshotReader(repo, name) as reader:
        yield reader


def export_snapshot(target: Any, name: str, destination: Any, *, passphrase: str | None = None,
                    identity: Any = None, keys: dict | None = None) -> Any:
    """Write snapshot ``name`` as a standalone sealed ``.dbs`` file (for download and rescue); a SealReport.

    The file is an ordinary backup: it restores, verifies and heals without the repository. It is sealed
    with ``keys`` (writer options: passphrase and/or recipients), by default the passphrase given.
    """
    from dbs_admin.sealed import seal

    keys = dict(keys or {"passphrase": passphrase})
    with open_snapshot(target, name, passphrase=passphrase, identity=identity) as reader:
        return seal(reader, destination, manifest=reader.manifest, file_sha256=True, **keys)


def snapshot_manifest(target: Any, name: str, *, passphrase: str | None = None, identity: Any = None) -> dict:
    """The manifest of snapshot ``name`` (its record and file list only: no pack of the payload is read)."""
    repo = Repository.open(target.store, passphrase=passphrase, identity=identity)
    if name not in repo.snapshot_names():
        raise BackupError(f"target {target.name!r} holds no snapshot named {name!r}; see manage.py dbs_list")
    info = repo.snapshot(name)
    return {**info.meta.get("manifest", {}), FILE_LIST: json.loads(b"".join(repo.read_stream(info, MANIFEST_STREAM)))}


def collect_garbage(target: Any, *, passphrase: str | None = None, identity: Any = None, wait: float = 0.0) -> Any:
    """Reclaim the space of snapshots the retention forgot (``dbs_prune`` on a repository target forgets,
    without a key; this needs it). Waits up to ``wait`` seconds for running backups; a GcReport."""
    from dbs_admin.sealed.repo.prune import collect_garbage as collect

    return collect(Repository.open(target.store, passphrase=passphrase, identity=identity), wait=wait)


def snapshot_objects(repo: Repository, name: str) -> list[str]:
    """Every object snapshot ``name`` needs: the keys, its record, the index objects and the packs holding
    its chunks (those of its id lists too). Reading the id lists decrypts them: this needs the key."""
    from dbs_admin.sealed.repo.records import INDEX_PREFIX, SNAPSHOT_PREFIX

    info = repo.snapshot(name)
    index = repo.index
    packs: set[str] = set()
    for root, depth, _size in info.streams.values():
        ids = [] if root is None else [root]
        for level in range(depth + 1):
            packs.update(index[cid].pack for cid in ids if cid in index)
            if level < depth:
                data = b"".join(repo.read_chunks(ids))
                ids = [data[i : i + 32] for i in range(0, len(data), 32)]
    return [KEYS_NAME, SNAPSHOT_PREFIX + name, *repo.store.list(INDEX_PREFIX), *sorted(packs)]


class SnapshotTee:
    """One capture, also written as a snapshot to each repository target, each on a thread of its own.

    Why a tee rather than reading the sealed file back: the pieces are fed as they are captured (one pass
    over the database, the sealing and the chunking on different threads), and a backup sealed to
    recipients only can still start a repository (reading the file back would need the identity). Each
    snapshot writer gets the pieces through a small bounded queue, so memory stays flat and the slowest
    side paces the capture. A repository that fails (a wrong passphrase, a full disk) fails its copy alone:
    its writer stops taking pieces and the backup goes on; a capture that fails or is cancelled stops every
    writer before it commits (a stopped writer leaves at most packs no snapshot names, which a collection
    removes).
    """

    def __init__(self, targets: list[Any], name: str, manifest: dict, keys: dict) -> None:
        import queue
        import threading

        self._queues = {t.name: queue.Queue(maxsize=8) for t in targets}
        self._stops = {t.name: threading.Event() for t in targets}
        self.results: dict[str, SnapshotReport | BaseException] = {}
        self._threads = []
        for target in targets:
            thread = threading.Thread(target=self._write, args=(target, name, manifest, keys),
                                      name=f"dbs-snapshot-{target.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _write(self, target: Any, name: str, manifest: dict, keys: dict) -> None:
        q, stop = self._queues[target.name], self._stops[target.name]

        def pieces() -> Iterator[bytes]:
            while True:
                item = q.get()
                if item is _TEE_END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        try:
            self.results[target.name] = write_snapshot(target, name, pieces(), manifest, keys)
        except BaseException as exc:  # noqa: BLE001 - this copy's outcome, recorded by the caller
            self.results[target.name] = exc
        finally:
            stop.set()

    def _put(self, target: str, item: Any) -> None:
        import queue

        q, stop = self._queues[target], self._stops[target]
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def wrap(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """``pieces`` unchanged, each also handed to every snapshot writer still going."""
        for piece in pieces:
            for target in self._queues:
                self._put(target, piece)
            yield piece
        for target in self._queues:
            self._put(target, _TEE_END)

    def finish(self) -> dict[str, SnapshotReport | BaseException]:
        for thread in self._threads:
            thread.join()
        return self.results

    def abort(self, why: BaseException) -> None:
        """Stop every writer before it commits (the capture or the sealing failed)."""
        for target in self._queues:
            self._put(target, why)
        for thread in self._threads:
            thread.join()


_TEE_END = object()
