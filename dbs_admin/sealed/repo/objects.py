"""Every object of a repository is a sealed container: the single file's healing, reused as it is.

An object (a pack of chunks, an index, a snapshot record) is laid out by the
container's own ``ContainerWriter``: 64 KiB blocks with BLAKE2b hashes,
interleaved Reed-Solomon parity, two copies of the data stream, header,
block table and manifest twice, a locator; written to a temporary file,
fsynced, verified after writing (``check_written``), then published under its
name by the store. So the keyless ``verify`` and ``heal`` of the container
work on any object unchanged, and damage is refused with the object named.

What differs from a ``.dbs`` backup is only the key: an object's header holds
one *repository* slot (type ``SLOT_TYPE_REPOSITORY``: the repository id, no
wrapped key) instead of passphrase or recipient slots, because the key is
derived from the repository key (``object_key``) rather than wrapped anew per
object (an Argon2 run per object would cost seconds). A ``.dbs`` reader given
such a file says it has no slot of the kind given, and decrypts nothing.

The data stream's meaning depends on the kind (see ``packs``, ``records``);
the manifest is the container's encrypted manifest record with ``kind``,
``name`` and ``repository`` in it, all checked on opening, so an object
cannot be swapped for another object or one of another repository.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dbs_admin.sealed.aead import PLAINTEXT_CHUNK_SIZE, derive_subkey
from dbs_admin.sealed.blocks import BlockReader
from dbs_admin.sealed.container import ContainerWriter
from dbs_admin.sealed.errors import NotSealedError, SealedError, UnrecoverableError
from dbs_admin.sealed.keys import _SLOT_HEAD
from dbs_admin.sealed.layout import BLOCK_SIZE, DATA_HASH_SIZE, FILE_ID_SIZE, Header, blake2b
from dbs_admin.sealed.reader import decrypt_manifest
from dbs_admin.sealed.repo.store import ObjectStore, RangeFile
from dbs_admin.sealed.structure import Structure, load_structure
from dbs_admin.sealed.writer import encrypt_manifest

SLOT_TYPE_REPOSITORY = 0x52  # "R": the object's key derives from the repository key named by the body
REPOSITORY_ID_SIZE = 16
OBJECT_KEY_LABEL = b"dbs1/repo-object "
# Small objects (snapshot records, small index objects, the keys, small packs) would be one 64 KiB-block file
# whose two copies of that block lie side by side, so one torn 4 KiB page could hit both. They use 1 KiB blocks
# instead, and their data stream is padded with zeros to MIN_DATA_LENGTH: each copy then spans more than a page,
# so no 4 KiB burst reaches both copies of any block, table or manifest. The manifest's "length" says where the
# real data ends.
SMALL_BLOCK_SIZE = 1 << 10
READ_AHEAD_BLOCKS = 32  # blocks read and checked at once when reading a pack by ranges
SMALL_OBJECT_LIMIT = 256 << 10
MIN_DATA_LENGTH = 5 << 10


class RepositoryObjectError(SealedError):
    """An object is not what its name says (another kind, another repository, another name)."""


def repository_slots(repository_id: bytes) -> bytes:
    """The header slot blob of every object: one repository slot naming the repository."""
    return bytes([1]) + _SLOT_HEAD.pack(SLOT_TYPE_REPOSITORY, len(repository_id)) + repository_id


def object_key(repository_key: bytes, file_id: bytes) -> bytes:
    """The object's own 32-byte key: HKDF(repository key, label || file id); unique per object."""
    return derive_subkey(repository_key, OBJECT_KEY_LABEL + file_id)


@dataclass(frozen=True)
class WrittenObject:
    name: str
    size: int
    data_length: int


def write_object(
    store: ObjectStore,
    name: str,
    *,
    repository_key: bytes,
    repository_id: bytes,
    kind: str,
    data: Callable[[bytes, bytes], Iterable[bytes]],
    manifest: dict,
    file_id: bytes | None = None,
    size_hint: int = 0,
    slots: bytes | None = None,
) -> WrittenObject:
    """Seal one object and publish it as ``name``; ``data(key, header_digest)`` yields its data stream.

    The object is written in the store's staging folder (or a temporary
    folder), fsynced and verified after writing, and only then published; on
    any failure nothing is published and the temporary file is removed.
    ``size_hint`` (about the data's length) picks the block size; ``slots``
    replaces the repository slot (the keys object holds the real key slots).
    """
    file_id = file_id or secrets.token_bytes(FILE_ID_SIZE)
    block_size = SMALL_BLOCK_SIZE if size_hint < SMALL_OBJECT_LIMIT else BLOCK_SIZE
    header = Header(file_id=file_id, created=int(time.time()), block_size=block_size,
                    chunk_size=PLAINTEXT_CHUNK_SIZE, slots=slots or repository_slots(repository_id))
    key = object_key(repository_key, file_id)
    staging = store.staging_dir()
    fd, tmp_name = tempfile.mkstemp(prefix="obj-", suffix=".tmp", dir=staging)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b", buffering=0) as f:
            writer = ContainerWriter(f, header)
            try:
                length = 0
                for piece in data(key, writer.digest):
                    writer.feed(piece)
                    length += len(piece)
                if length < MIN_DATA_LENGTH:
                    writer.feed(bytes(MIN_DATA_LENGTH - length))
                envelope = {"format": 1, "manifest": {**manifest, "kind": kind, "name": name, "length": length,
                                                      "repository": repository_id.hex()}}
                size = writer.finish(encrypt_manifest(key, writer.digest, envelope))
            finally:
                writer.close()
            os.fsync(f.fileno())
        writer.check_written(tmp)
        store.put_atomic(name, tmp)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    return WrittenObject(name, size, writer.data_length)


class SealedObject:
    """One object opened for reading: its manifest (authenticated), and its data stream healed by ranges."""

    def __init__(self, store: ObjectStore, name: str, *, repository_key: bytes | Callable[[bytes], bytes],
                 repository_id: bytes | None, kind: str):
        """``repository_key`` may be a function of the header's key slots (opening the keys object);
        ``repository_id`` None accepts any (the keys object, before the id is known)."""
        self.name = name
        self._f: BinaryIO = store.open(name) if hasattr(store, "open") else RangeFile(store, name)
        try:
            size = store.size(name)
            try:
                self.structure: Structure = load_structure(self._f, size)
            except (UnrecoverableError, NotSealedError) as exc:  # destroyed beyond recognition: lost all the same
                raise UnrecoverableError(f"repository object {name} is damaged beyond repair: {exc}",
                                         regions=getattr(exc, "regions", ())) from None
            if self.structure.manifest_payload is None:
                raise UnrecoverableError(f"repository object {name}: the manifest is damaged beyond repair in "
                                         "both copies", regions=("manifest",))
            if callable(repository_key):
                repository_key = repository_key(self.structure.header.slots)
            self.repository_key = repository_key
            self.key = object_key(repository_key, self.structure.header.file_id)
            envelope = decrypt_manifest(self.key, self.structure.digest, self.structure.manifest_payload)
            self.manifest: dict = envelope["manifest"]
            if repository_id is None:
                repository_id = bytes.fromhex(str(self.manifest.get("repository")))
            self.repository_id = repository_id
            expected = (kind, name, repository_id.hex())
            found = (self.manifest.get("kind"), self.manifest.get("name"), self.manifest.get("repository"))
            if found != expected:
                raise RepositoryObjectError(
                    f"repository object {name} is a {found[0]} named {found[1]} of repository {found[2]}, not "
                    f"the {kind} it should be: the repository was tampered with or mixed with another")
            self._blocks = BlockReader(self._f, size, self.structure.table)
            self._verified: dict[int, bytes] = {}  # blocks already checked (a block holds many small chunks)
        except BaseException:
            self._f.close()
            raise

    @property
    def digest(self) -> bytes:
        return self.structure.digest

    @property
    def data_length(self) -> int:
        """Bytes of real data (the stream may be padded after them)."""
        return int(self.manifest["length"])

    def checked_view(self, offset: int, length: int) -> memoryview | None:
        """A view of bytes offset..offset+length when they lie inside one block already checked (or healed) by
        :meth:`read_range`, else None: the restore's per-chunk fast path, with no copy and no block lookup."""
        size = self.structure.table.block_size
        first = offset // size
        if length and (offset + length - 1) // size == first:
            block = self._verified.get(first)
            if block is not None:
                start = offset - first * size
                return memoryview(block)[start : start + length]
        return None

    def read_range(self, offset: int, length: int) -> bytes | memoryview:
        """Bytes offset..offset+length of the data stream, each block from a copy that verifies or healed (a view
        into a checked block when the range lies inside one)."""
        if length == 0:
            return b""
        table = self.structure.table
        if offset < 0 or offset + length > self.data_length:
            raise UnrecoverableError(f"repository object {self.name}: range {offset}+{length} is outside its "
                                     f"{self.data_length} bytes of data")
        view = self.checked_view(offset, length)
        if view is not None:  # most chunks: inside one block already checked, no copy
            return view
        first, last = offset // table.block_size, (offset + length - 1) // table.block_size
        cached = self._verified
        out = bytearray()
        lost = []
        if all(i in cached for i in range(first, last + 1)):
            blocks = [(i, cached[i]) for i in range(first, last + 1)]
        else:  # read ahead: chunks are mostly read in the order they were packed
            ahead = min(table.block_count - 1, max(last, first + READ_AHEAD_BLOCKS - 1))
            blocks = [(i, data) for i, data, _parity, _ in self._blocks._split(0, first, ahead)]
            cached.clear()
        for i, data in blocks:
            if i not in cached:
                if blake2b(data, DATA_HASH_SIZE) != table.data_hash(i):
                    data = self._blocks.repair(i)
                    if data is None:
                        lost.append(i)
                        continue
                cached[i] = data
            if i <= last:
                out += data
        if lost:
            raise UnrecoverableError(
                f"repository object {self.name}: data block(s) {lost} are damaged beyond repair in both copies",
                blocks=tuple(lost))
        start = offset - first * table.block_size
        return bytes(out[start : start + length])

    def read_all(self) -> bytes:
        """The whole data stream (small objects: index, snapshot records)."""
        try:
            return b"".join(self._blocks.iter_data())[: self.data_length]
        except UnrecoverableError as exc:
            raise UnrecoverableError(f"repository object {self.name}: {exc}", blocks=exc.blocks) from None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SealedObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
