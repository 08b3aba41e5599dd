"""The repository: deduplicated, encrypted snapshots made of chunks, every object sealed and healable.

    repo = Repository.init(store, passphrase=...)        # or recipients=...
    repo = Repository.open(store, passphrase=... | identity=...)
    with repo.new_snapshot() as snap:
        snap.set_stream("payload", snap.add_records(rows))   # or snap.add_bytes(pieces)
        info = snap.commit(meta={...})
    for piece in repo.read_stream(info.name, "payload"): ...

A snapshot lists, per named stream, the ids of its chunks; those id lists
are themselves stored as chunks (cut between ids by content, and nested until
one chunk remains), so a snapshot in which little changed stores only the
few list chunks that changed, and its record stays a few hundred bytes.
Objects are published in an order that keeps the repository valid at every
instant: packs, then the index object naming them, then the snapshot record.
A killed backup leaves at most unreferenced packs (prune removes them).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import zstandard

from dbs_admin.sealed.errors import (
    AuthenticationError,
    SealedError,
    SnapshotNotFoundError,
    UnrecoverableError,
    UsageError,
)
from dbs_admin.sealed.keys import Argon2Params, Identity
from dbs_admin.sealed.repo.chunker import RecordChunker, cdc_chunks
from dbs_admin.sealed.repo.chunkindex import ChunkIndex
from dbs_admin.sealed.repo.keyfile import KEYS_NAME, RepositoryKey, create_keys, open_keys
from dbs_admin.sealed.repo.locks import lock
from dbs_admin.sealed.repo.objects import SealedObject
from dbs_admin.sealed.repo.packs import (
    DICT_D,
    DICT_K,
    DICT_PREFIX,
    DICT_SIZE,
    PACK_PREFIX,
    ChunkOpener,
    Dictionary,
    Entry,
    PackWriter,
    pack_entries,
)
from dbs_admin.sealed.repo.records import (
    INDEX_PREFIX,
    SNAPSHOT_PREFIX,
    encode_index,
    read_record,
    write_record,
)
from dbs_admin.sealed.repo.store import ObjectStore

ID_SIZE = 32
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,180}$")
# Id lists of a stream's chunks: 2..256 ids a chunk, 8 on average. Why that small: the ids of a list are random, so
# a list chunk never compresses and any id that changes stores its whole list chunk again, and after an edit of 200
# posts scattered over 20,000 about as many list chunks change. Measured on the reference site's 1% change, two
# copies included: 1.88 MB added with 2 KiB lists on average (half of it lists), 1.48 MB with 512 B, 1.43 MB with
# 256 B. The lists of those lists (8x fewer ids at each level) change nearly whole after such an edit whatever
# their cuts, so they keep 2 KiB ones: fewer chunks for a restore to read first, and a shallower nesting.
LIST_SIZES = {"min_size": 64, "avg_size": 256, "max_size": 8 << 10}
UPPER_LIST_SIZES = {"min_size": 512, "avg_size": 2 << 10, "max_size": 8 << 10}


@dataclass(frozen=True)
class SnapshotInfo:
    """What ``snapshots()`` lists: name, time, metadata, and what the snapshot cost and holds."""

    name: str
    created: float
    host: str
    meta: dict
    added_bytes: int  # bytes of objects this snapshot published (packs, index, its own record)
    plaintext_size: int  # bytes of its streams before chunking
    streams: dict


class Repository:
    """An opened repository (the key is unwrapped); see the module docstring."""

    def __init__(self, store: ObjectStore, key: RepositoryKey):
        self.store = store
        self.rkey = key
        self._id_key = key.chunk_id_key
        self._index: ChunkIndex | None = None
        self._dicts: dict[str, bytes] = {}

    # --- creating and opening

    @classmethod
    def init(cls, store: ObjectStore, *, passphrase: str | bytes | None = None, recipients: Iterable[str] = (),
             argon2: Argon2Params | None = None, allow_weak_argon2: bool = False) -> Repository:
        if store.list(KEYS_NAME) or _exists(store, KEYS_NAME):
            raise UsageError(f"{store!r} already holds a repository")
        key = create_keys(store, passphrase=passphrase, recipients=tuple(recipients), argon2=argon2,
                          allow_weak_argon2=allow_weak_argon2)
        return cls(store, key)

    @classmethod
    def open(cls, store: ObjectStore, *, passphrase: str | bytes | None = None,
             identity: Identity | None = None) -> Repository:
        return cls(store, open_keys(store, passphrase=passphrase, identity=identity))

    def _kw(self) -> dict:
        return {"repository_key": self.rkey.key, "repository_id": self.rkey.repository_id}

    # --- chunks

    def chunk_id(self, chunk: bytes) -> bytes:
        return hashlib.blake2b(chunk, digest_size=ID_SIZE, key=self._id_key).digest()

    @property
    def index(self) -> ChunkIndex:
        """Chunk id -> where it is: the union of every index object (loaded once, in compact columns)."""
        if self._index is None:
            index = ChunkIndex()
            for name in self.store.list(INDEX_PREFIX):
                doc = read_record(self.store, name, "index", **self._kw())
                index.add_blob(doc["packs"], doc["entries"])
            self._index = index
        return self._index

    def dictionary(self, name: str) -> bytes:
        """The bytes of zstd dictionary ``name`` (``dicts/…``), read once."""
        data = self._dicts.get(name)
        if data is None:
            doc = read_record(self.store, name, "dict", **self._kw())
            data = self._dicts[name] = bytes(doc["dict"])
        return data

    def current_dictionary(self) -> Dictionary | None:
        """The dictionary new chunks are compressed with: the first by name (None before one was trained)."""
        names = self.store.list(DICT_PREFIX)
        return Dictionary(names[0], self.dictionary(names[0])) if names else None

    def dictionary_trainer(self, prefix: str) -> Callable[[list[bytes]], tuple[Dictionary | None, int]]:
        """``train(samples)`` for a PackWriter: trains, publishes ``dicts/<prefix><random>``; (it, its size)."""

        def train(samples: list[bytes]) -> tuple[Dictionary | None, int]:
            try:
                data = zstandard.train_dictionary(DICT_SIZE, samples, k=DICT_K, d=DICT_D).as_bytes()
            except zstandard.ZstdError:
                return None, 0  # too few or too uniform samples: compress without one
            name = DICT_PREFIX + prefix + secrets.token_hex(16)
            written = write_record(self.store, name, "dict", {"format": 1, "dict": data}, **self._kw())
            self._dicts[name] = data
            return Dictionary(name, data), written.size

        return train

    def rebuild_index(self) -> int:
        """Publish one index object listing every chunk of every pack (after an index was lost); returns count."""
        entries: dict[bytes, Entry] = {}
        for name in self.store.list(PACK_PREFIX):
            with SealedObject(self.store, name, kind="pack", **self._kw()) as obj:
                entries.update(pack_entries(obj))
        write_record(self.store, INDEX_PREFIX + secrets.token_hex(16), "index", encode_index(entries), **self._kw())
        self._index = None
        return len(entries)

    def read_chunks(self, ids: Iterable[bytes]) -> Iterator[bytes]:
        """The chunks ``ids`` in order, each authenticated and checked against its keyed id."""
        index = self.index
        opened: dict[str, ChunkOpener] = {}
        current, opener = None, None
        decompressors: dict = {}
        blake2b, id_key = hashlib.blake2b, self._id_key
        try:
            for cid, entry in index.locate_many(ids):
                if entry is None:
                    raise UnrecoverableError(f"chunk {cid.hex()} is in no index: the repository lost data it "
                                             "needs (run check; rebuild the index from the packs)")
                if entry.pack != current:  # chunks come mostly pack after pack: the LRU is kept only on a change
                    current = entry.pack
                    opener = opened.pop(current, None)
                    if opener is None:
                        if len(opened) >= 8:
                            old = next(iter(opened))
                            opened.pop(old).obj.close()
                        obj = SealedObject(self.store, current, kind="pack", **self._kw())
                        opener = ChunkOpener(obj, self.dictionary, decompressors)
                    opened[current] = opener  # most recently used last: the oldest is closed first
                chunk = opener.open(cid, entry)
                if blake2b(chunk, digest_size=ID_SIZE, key=id_key).digest() != cid:
                    raise AuthenticationError(f"chunk {cid.hex()} in {entry.pack} does not match its id")
                yield chunk
        finally:
            for opener in opened.values():
                opener.obj.close()

    def expand(self, root: bytes, depth: int) -> list[bytes]:
        """The chunk ids of a stream from its root list chunk (see ``SnapshotWriter.store_list``)."""
        ids = [root]
        for _ in range(depth):
            data = b"".join(self.read_chunks(ids))
            if len(data) % ID_SIZE:
                raise SealedError("a chunk list has a length that is not a whole number of ids")
            ids = [data[i : i + ID_SIZE] for i in range(0, len(data), ID_SIZE)]
        return ids

    # --- snapshots

    def new_snapshot(self, name: str | None = None, *, lock_wait: float = 600.0) -> SnapshotWriter:
        """A writer for a new snapshot called ``name`` (default: its UTC time and a random suffix)."""
        return SnapshotWriter(self, name, lock_wait)

    def snapshot_names(self) -> list[str]:
        return [n[len(SNAPSHOT_PREFIX):] for n in self.store.list(SNAPSHOT_PREFIX)]

    def snapshot(self, name: str) -> SnapshotInfo:
        if name not in self.snapshot_names():
            raise SnapshotNotFoundError(f"no snapshot named {name} in this repository")
        doc = read_record(self.store, SNAPSHOT_PREFIX + name, "snapshot", **self._kw())
        added = doc["added_bytes"] + self.store.size(SNAPSHOT_PREFIX + name)
        return SnapshotInfo(name, doc["created"], doc["host"], doc["meta"], added,
                            doc["plaintext_size"], doc["streams"])

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first."""
        return sorted((self.snapshot(n) for n in self.snapshot_names()), key=lambda s: (s.created, s.name))

    def stream_ids(self, snapshot: SnapshotInfo, stream: str) -> list[bytes]:
        try:
            root, depth, _size = snapshot.streams[stream]
        except KeyError:
            raise UsageError(f"snapshot {snapshot.name} has no stream {stream!r}") from None
        return [] if root is None else self.expand(root, depth)

    def read_stream(self, snapshot: str | SnapshotInfo, stream: str) -> Iterator[bytes]:
        """The bytes of one stream of a snapshot, chunk by chunk (constant memory but for the upper id lists).

        The stream's own id list is read as its chunks are (``_lazy_ids``): a restore starts on the first
        chunks at once instead of after reading every list chunk, and that reading happens on the thread
        that reads the stream (the restore's reader), not before."""
        info = self.snapshot(snapshot) if isinstance(snapshot, str) else snapshot
        try:
            root, depth, _size = info.streams[stream]
        except KeyError:
            raise UsageError(f"snapshot {info.name} has no stream {stream!r}") from None
        return self.read_chunks(self._lazy_ids(root, depth))

    def _lazy_ids(self, root: bytes | None, depth: int) -> Iterator[bytes]:
        """``expand(root, depth)`` as an iterator: the lists above the last (few chunks) are read at the first
        ``next``, the last list a chunk at a time as its ids are taken."""
        if root is None:
            return
        if depth == 0:
            yield root
            return
        for data in self.read_chunks(self.expand(root, depth - 1)):
            if len(data) % ID_SIZE:
                raise SealedError("a chunk list has a length that is not a whole number of ids")
            for i in range(0, len(data), ID_SIZE):
                yield data[i : i + ID_SIZE]

    def size(self) -> int:
        """Bytes of every object in the store."""
        return sum(self.store.size(n) for p in (KEYS_NAME, PACK_PREFIX, DICT_PREFIX, INDEX_PREFIX, SNAPSHOT_PREFIX)
                   for n in (self.store.list(p) if p.endswith("/") else [p]))


class SnapshotWriter:
    """Adds chunks for one snapshot; ``commit`` publishes packs, then the index, then the record."""

    def __init__(self, repo: Repository, name: str | None = None, lock_wait: float = 600.0):
        self.repo = repo
        self.name = name or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        check_snapshot_name(self.name)
        if _exists(repo.store, SNAPSHOT_PREFIX + self.name):
            raise UsageError(f"a snapshot named {self.name} already exists")
        # A shared lock for the whole backup keeps garbage collection (which deletes packs no index or snapshot
        # names yet) out; the index is read under it, so it is never one a collection has since replaced.
        self._lock = ExitStack()
        self._lock.enter_context(lock(repo.store, exclusive=False, wait=lock_wait))
        try:
            dictionary = repo.current_dictionary()
            self.packer = PackWriter(repo.store, repo.rkey.key, repo.rkey.repository_id, prefix=self.name + ".",
                                     dictionary=dictionary,
                                     train=None if dictionary else repo.dictionary_trainer(self.name + "."))
            self.streams: dict[str, list] = {}
            self.plaintext_size = 0
            repo._index = None
            self._known = repo.index
        except BaseException:
            self._lock.close()
            raise
        self._committed = False

    def close(self) -> None:
        """Release the lock (``commit`` does); packs already published stay unreferenced until collected."""
        self._lock.close()

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_chunk(self, chunk: bytes) -> bytes:
        cid = self.repo.chunk_id(chunk)
        if cid not in self._known and not self.packer.holds(cid):
            self.packer.add(cid, chunk)
        return cid

    def add_chunk_batch(self, chunks: list[bytes]) -> list[bytes]:
        """``add_chunk`` for each chunk in turn, the index searched once for the whole batch; their ids."""
        chunk_id = self.repo.chunk_id
        ids = [chunk_id(chunk) for chunk in chunks]
        holds, add = self.packer.holds, self.packer.add
        for cid, chunk, known in zip(ids, chunks, self._known.contains_many(ids)):
            if not known and not holds(cid):
                add(cid, chunk)
        return ids

    def add_chunks(self, chunks: Iterable[bytes]) -> list[bytes]:
        """Store chunks cut by the caller (who knows the stream's structure); returns their ids."""
        ids = []
        for chunk in chunks:
            self.plaintext_size += len(chunk)
            ids.append(self.add_chunk(chunk))
        return ids

    def add_bytes(self, pieces: Iterable[bytes], **sizes: int) -> list[bytes]:
        """Chunk a byte stream with FastCDC; returns its chunk ids."""
        ids = []
        for chunk in cdc_chunks(pieces, **sizes):
            self.plaintext_size += len(chunk)
            ids.append(self.add_chunk(chunk))
        return ids

    def add_records(self, records: Iterable[bytes], **sizes: int) -> list[bytes]:
        """Chunk a stream of records, cutting only between records; returns its chunk ids."""
        chunker = RecordChunker(**sizes)
        ids = []
        for record in records:
            for chunk in chunker.feed(record):
                self.plaintext_size += len(chunk)
                ids.append(self.add_chunk(chunk))
        for chunk in chunker.finish():
            self.plaintext_size += len(chunk)
            ids.append(self.add_chunk(chunk))
        return ids

    def store_list(self, ids: list[bytes]) -> tuple[bytes | None, int]:
        """Store an id list as chunks, nesting until one chunk holds it: (root id, depth)."""
        if not ids:
            return None, 0
        depth = 0
        while True:
            chunker = RecordChunker(**(UPPER_LIST_SIZES if depth else LIST_SIZES))
            chunks = chunker.feed_many(ids) + chunker.finish()
            ids = self.add_chunk_batch(chunks)
            depth += 1
            if len(ids) == 1:
                return ids[0], depth

    def set_stream(self, name: str, ids: list[bytes], size: int | None = None) -> None:
        root, depth = self.store_list(ids)
        self.streams[name] = [root, depth, size]

    def commit(self, *, meta: dict | None = None) -> SnapshotInfo:
        if self._committed:
            raise UsageError("this snapshot was already committed")
        repo = self.repo
        self.packer.flush()
        added = self.packer.bytes_written
        if self.packer.written:
            written = write_record(repo.store, INDEX_PREFIX + self.name + "." + secrets.token_hex(16), "index",
                                   encode_index(self.packer.written), **repo._kw())
            added += written.size
            if repo._index is not None:
                repo._index.update(self.packer.written)
        now = time.time()
        name = self.name
        doc = {"format": 1, "created": now, "host": socket.gethostname(), "meta": dict(meta or {}),
               "streams": self.streams, "plaintext_size": self.plaintext_size, "added_bytes": added}
        try:
            record = write_record(repo.store, SNAPSHOT_PREFIX + name, "snapshot", doc, **repo._kw())
        finally:
            self.close()
        self._committed = True
        return SnapshotInfo(name, now, doc["host"], doc["meta"], added + record.size, self.plaintext_size,
                            self.streams)


def check_snapshot_name(name: str) -> str:
    if not _SNAPSHOT_NAME.match(name):
        raise UsageError(f"invalid snapshot name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def keyless_listing(store: ObjectStore) -> list[tuple[str, int]]:
    """``(snapshot name, bytes it added)`` of every snapshot, oldest name first, without the key.

    What a snapshot added is its record plus the packs and index objects named after it (a snapshot that
    added nothing new costs its record alone).
    """
    added: dict[str, int] = {}
    names = [n[len(SNAPSHOT_PREFIX):] for n in store.list(SNAPSHOT_PREFIX)]
    for name in names:
        added[name] = store.size(SNAPSHOT_PREFIX + name)
    for prefix in (PACK_PREFIX, DICT_PREFIX, INDEX_PREFIX):
        for obj in store.list(prefix):
            owner = obj[len(prefix):].rsplit(".", 1)[0]
            if owner in added:
                added[owner] += store.size(obj)
    return sorted(added.items())


def _exists(store: ObjectStore, name: str) -> bool:
    try:
        store.size(name)
    except (FileNotFoundError, OSError):
        return False
    return True


__all__ = ["Repository", "SnapshotWriter", "SnapshotInfo", "keyless_listing", "check_snapshot_name"]
