"""Packs: many chunks, each compressed and encrypted on its own, sealed together as one object.

Why packs: one object per chunk would mean millions of small files, each
with the container's fixed cost (header, table, manifest, locator, twice);
grouping chunks into packs of a few MiB amortises that, and a restore reads
each pack by ranges.

A chunk's blob in the pack's data stream is AES-256-GCM(pack key, nonce =
its position in the pack as 12 bytes big-endian, zstd(chunk) or the chunk
itself, associated data = chunk id || flags). The pack key is the object's
own key (unique per pack), so a nonce is never reused. The pack's manifest
(encrypted, stored twice with the container's metadata) lists its entries,
so the index can be rebuilt from the packs alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dbs_admin.sealed.errors import AuthenticationError
from dbs_admin.sealed.layout import FILE_ID_SIZE
from dbs_admin.sealed.repo.objects import SealedObject, object_key, write_object
from dbs_admin.sealed.repo.store import ObjectStore

PACK_PREFIX = "packs/"
DICT_PREFIX = "dicts/"
PACK_TARGET_SIZE = 8 << 20
FLAG_ZSTD = 1
FLAG_DICT = 2  # with FLAG_ZSTD: compressed with the zstd dictionary the pack's manifest names
ZSTD_LEVEL = 3
DICT_SIZE = 112 << 10  # bytes of a trained dictionary
# zstd's fastcover parameters (segment and d-mer sizes), fixed: left to zstd, training tries some 40 of them on
# every first backup. Measured on the reference site's first 4 MiB of row chunks: searched 0.22 s (it chose
# k=1998, d=8), 74 MB of row chunks then 5.49 MB compressed; fixed at k=2048, d=8, 0.06 s and 5.45 MB.
DICT_K, DICT_D = 2048, 8
TRAIN_BYTES = 4 << 20  # plaintext gathered from a repository's first new chunks before training one
TRAIN_MIN_SAMPLES = 200  # fewer small chunks than this: no dictionary (yet)
SAMPLE_MAX = 16 << 10  # chunks up to this size are samples (rows, lists), larger ones (file bytes) are not


@dataclass(frozen=True)
class Dictionary:
    """A zstd dictionary of the repository (object ``dicts/…``): small chunks (rows) compress 3x better with it.

    Why: a 4 KiB chunk of rows compressed alone finds few repeats, while the same rows in one long stream
    share field names, values and prose with their neighbours; a dictionary trained on the repository's own
    chunks gives each small chunk most of that context (measured on the reference site: 74 MB of row chunks
    20.1 MB compressed alone, 6.2 MB with a 112 KiB dictionary, 5.1 MB as one stream).
    """

    name: str
    data: bytes


class Entry(NamedTuple):
    """Where a chunk is: pack name, blob offset and length in its data stream, sequence number, flags, raw size.

    A named tuple (immutable, as a frozen dataclass, but made five times faster): a restore makes one per chunk."""

    pack: str
    offset: int
    length: int
    seq: int
    flags: int
    raw_length: int


def _nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")


def _ad(chunk_id: bytes, flags: int) -> bytes:
    return chunk_id + bytes([flags])


class PackWriter:
    """Collects encrypted chunks in memory and seals a pack whenever ``PACK_TARGET_SIZE`` is reached."""

    def __init__(self, store: ObjectStore, repository_key: bytes, repository_id: bytes, prefix: str = "", *,
                 dictionary: Dictionary | None = None,
                 train: Callable[[list[bytes]], tuple[Dictionary | None, int]] | None = None):
        """``prefix`` starts every pack's name (the snapshot's name: what it added is then known without a key).

        ``dictionary`` compresses chunks; without one, ``train(samples)`` is called once enough chunks came
        (it publishes a dictionary and returns it with the bytes it added), and the chunks gathered
        meanwhile are packed with it.
        """
        self.store, self.repository_key, self.repository_id = store, repository_key, repository_id
        self.prefix = prefix
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.dictionary: Dictionary | None = None
        self._use(dictionary)
        self._trainer = train if dictionary is None else None
        self._gathered: list[tuple[bytes, bytes]] | None = [] if self._trainer is not None else None
        self._gathered_bytes = 0
        self.written: dict[bytes, Entry] = {}  # chunk id -> entry, for the index
        self.bytes_written = 0  # bytes of published pack objects (and of a dictionary trained here)
        self._new_pack()

    def _use(self, dictionary: Dictionary | None) -> None:
        self.dictionary = dictionary
        self._zstd_dict = None if dictionary is None else zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, dict_data=zstandard.ZstdCompressionDict(dictionary.data))

    def _train(self) -> None:
        gathered, self._gathered = self._gathered or [], None
        samples = [chunk for _, chunk in gathered if len(chunk) <= SAMPLE_MAX]
        if self._trainer is not None and len(samples) >= TRAIN_MIN_SAMPLES:
            dictionary, added = self._trainer(samples)
            self.bytes_written += added
            self._use(dictionary)
        for cid, chunk in gathered:
            self._add(cid, chunk)

    def _new_pack(self) -> None:
        self._file_id = secrets.token_bytes(FILE_ID_SIZE)
        self._name = PACK_PREFIX + self.prefix + secrets.token_hex(16)
        self._aead = AESGCM(object_key(self.repository_key, self._file_id))
        self._blobs: list[bytes] = []
        self._entries: list[tuple[bytes, Entry]] = []
        self._pending: set[bytes] = set()
        self._size = 0

    def holds(self, chunk_id: bytes) -> bool:
        """Whether this writer already stored (or is about to store) the chunk."""
        return chunk_id in self.written or chunk_id in self._pending

    def add(self, chunk_id: bytes, chunk: bytes) -> None:
        if self._gathered is not None:  # no dictionary yet: gather the first chunks to train one on
            self._gathered.append((chunk_id, chunk))
            self._pending.add(chunk_id)
            self._gathered_bytes += len(chunk)
            if self._gathered_bytes >= TRAIN_BYTES:
                self._train()
            return
        self._add(chunk_id, chunk)

    def _add(self, chunk_id: bytes, chunk: bytes) -> None:
        if self._zstd_dict is not None:
            packed = self._zstd_dict.compress(chunk)
            flags, body = (FLAG_ZSTD | FLAG_DICT, packed) if len(packed) < len(chunk) else (0, chunk)
        else:
            packed = self._zstd.compress(chunk)
            flags, body = (FLAG_ZSTD, packed) if len(packed) < len(chunk) else (0, chunk)
        seq = len(self._blobs)
        blob = self._aead.encrypt(_nonce(seq), body, _ad(chunk_id, flags))
        self._entries.append((chunk_id, Entry(self._name, self._size, len(blob), seq, flags, len(chunk))))
        self._blobs.append(blob)
        self._pending.add(chunk_id)
        self._size += len(blob)
        if self._size >= PACK_TARGET_SIZE:
            self.flush()

    def flush(self) -> None:
        """Seal and publish the pack being filled (if it holds anything)."""
        if self._gathered is not None:
            self._train()
        if not self._blobs:
            return
        blobs, entries = self._blobs, self._entries
        manifest: dict = {"entries": [[cid.hex(), e.offset, e.length, e.seq, e.flags, e.raw_length]
                                      for cid, e in entries]}
        if any(e.flags & FLAG_DICT for _, e in entries):
            manifest["dict"] = self.dictionary.name if self.dictionary is not None else None
        written = write_object(self.store, self._name, repository_key=self.repository_key,
                               repository_id=self.repository_id, kind="pack", data=lambda key, digest: blobs,
                               manifest=manifest, file_id=self._file_id, size_hint=self._size)
        self.bytes_written += written.size
        self.written.update(entries)
        self._new_pack()


def pack_entries(obj: SealedObject) -> dict[bytes, Entry]:
    """The entries a pack's own manifest lists (what rebuilding the index reads)."""
    return {bytes.fromhex(cid): Entry(obj.name, off, length, seq, flags, raw)
            for cid, off, length, seq, flags, raw in obj.manifest["entries"]}


class ChunkOpener:
    """Decrypts chunks out of an opened pack."""

    def __init__(self, obj: SealedObject, dictionaries: Callable[[str], bytes] | None = None,
                 decompressors: dict[str, zstandard.ZstdDecompressor] | None = None):
        """``dictionaries(name)`` gives a dictionary's bytes (for chunks flagged FLAG_DICT); ``decompressors``, a
        cache the openers of one reader share (a dictionary is loaded once, not once per pack; one thread's)."""
        self.obj = obj
        self._aead = AESGCM(obj.key)
        self._zstd = zstandard.ZstdDecompressor()
        self._dictionaries = dictionaries
        self._decompressors = {} if decompressors is None else decompressors
        self._zstd_dict: zstandard.ZstdDecompressor | None = None

    def _dict_decompressor(self) -> zstandard.ZstdDecompressor:
        if self._zstd_dict is None:
            name = self.obj.manifest.get("dict")
            if not isinstance(name, str) or not name.startswith(DICT_PREFIX) or self._dictionaries is None:
                raise AuthenticationError(f"{self.obj.name} holds chunks compressed with a dictionary it does not "
                                          "name")
            if name not in self._decompressors:
                self._decompressors[name] = zstandard.ZstdDecompressor(
                    dict_data=zstandard.ZstdCompressionDict(self._dictionaries(name)))
            self._zstd_dict = self._decompressors[name]
        return self._zstd_dict

    def open(self, chunk_id: bytes, entry: Entry, blob: bytes | memoryview | None = None) -> bytes:
        if blob is None:  # inside one block already checked (most chunks): a view of it, else the checked read
            blob = self.obj.checked_view(entry.offset, entry.length)
            if blob is None:
                blob = self.obj.read_range(entry.offset, entry.length)
        try:
            body = self._aead.decrypt(_nonce(entry.seq), blob, _ad(chunk_id, entry.flags))
        except InvalidTag:
            raise AuthenticationError(f"chunk {chunk_id.hex()} in {self.obj.name} failed authentication: the "
                                      "pack was tampered with or the index points to the wrong place") from None
        if entry.flags & FLAG_DICT:
            body = self._dict_decompressor().decompress(body, max_output_size=entry.raw_length)
        elif entry.flags & FLAG_ZSTD:
            body = self._zstd.decompress(body, max_output_size=entry.raw_length)
        if len(body) != entry.raw_length:
            raise AuthenticationError(f"chunk {chunk_id.hex()} in {self.obj.name} has the wrong length")
        return body
