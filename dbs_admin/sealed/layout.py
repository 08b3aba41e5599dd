"""Constants and fixed binary structures of the ``.dbs`` format, version 1.

Everything here is mirrored in ``docs/FORMAT.md`` (a test compares the two).
All integers are little-endian. This module only packs and unpacks bytes;
it knows nothing about files, healing or keys.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from dbs_admin.sealed import rs_params as rs
from dbs_admin.sealed.errors import NotSealedError, UnsupportedVersionError

MAGIC = b"\x89DBS\r\n\x1a\n"  # PNG-style: catches text-mode and 7-bit transfers
FORMAT_VERSION = 1
BLOCK_SIZE = 1 << 16  # 64 KiB data blocks: 294 codewords, a 4 KiB burst = 14 errors each
META_PIECE_SIZE = 1 << 16  # metadata payloads are RS-protected in pieces of this size
DATA_HASH_SIZE = 32  # BLAKE2b-256 of a block's data
PARITY_HASH_SIZE = 16  # BLAKE2b-128 of a block's parity
TABLE_ENTRY_SIZE = DATA_HASH_SIZE + PARITY_HASH_SIZE
FILE_ID_SIZE = 16
HEADER_DIGEST_SIZE = 32

HASH_BLAKE2B = 1
COMPRESSION_ZSTD = 1
CIPHER_AES256GCM_STREAM = 1

KIND_HEADER = 1
KIND_TABLE = 2
KIND_MANIFEST = 3
KIND_LOCATOR = 4
KIND_NAMES = {KIND_HEADER: "header", KIND_TABLE: "block table", KIND_MANIFEST: "manifest",
              KIND_LOCATOR: "locator"}

# Record prefix: the message of one shortened RS codeword, followed by its NSYM parity bytes.
PREFIX = struct.Struct("<8sBBBB16sQ32s")  # magic kind version copy reserved file_id length hash
PREFIX_SIZE = PREFIX.size + rs.NSYM

# Header payload, fixed part; the key-slot blob follows.
HEADER_FIXED = struct.Struct("<HH16sQIBBBBBBBBII")
# version flags file_id created block_size rs_n rs_nsym hash compression cipher reserved*3
# chunk_size slots_length

# Block table payload, fixed part; block_count entries follow.
TABLE_FIXED = struct.Struct("<16s32sQQIIQQ")
# file_id header_digest data_length block_count block_size entry_size copy_a copy_b

# Locator payload: where every region is, so a reader never has to scan an undamaged file.
LOCATOR = struct.Struct("<16sQQQQQQQQQQQQ")
# file_id header[2] header_len table[2] table_len manifest[2] manifest_len copies[2] total_size


def blake2b(data: bytes | bytearray | memoryview, size: int) -> bytes:
    """Unkeyed BLAKE2b with the given digest size (all hashes of the format)."""
    return hashlib.blake2b(data, digest_size=size).digest()


def header_digest(header_payload: bytes) -> bytes:
    """The 32-byte digest of the header payload: the AEAD associated data of every chunk."""
    return blake2b(header_payload, HEADER_DIGEST_SIZE)


def record_size(payload_length: int) -> int:
    """Bytes on disk of a metadata record whose payload is ``payload_length`` bytes."""
    full, rest = divmod(payload_length, META_PIECE_SIZE)
    size = PREFIX_SIZE + full * (META_PIECE_SIZE + rs.parity_size(META_PIECE_SIZE))
    return size + (rest + rs.parity_size(rest) if rest else 0)


def block_length(index: int, block_count: int, data_length: int, block_size: int) -> int:
    """Data bytes of block ``index`` (only the last block may be short)."""
    if index < block_count - 1:
        return block_size
    return data_length - (block_count - 1) * block_size


def copy_size(block_count: int, data_length: int, block_size: int) -> int:
    """Bytes of one copy of the data stream (block records laid end to end)."""
    if block_count == 0:
        return 0
    full = block_size + rs.parity_size(block_size)
    last = block_length(block_count - 1, block_count, data_length, block_size)
    return (block_count - 1) * full + last + rs.parity_size(last)


@dataclass(frozen=True)
class Header:
    """Parameters fixed before any data is written (the header payload)."""

    file_id: bytes
    created: int
    block_size: int
    chunk_size: int
    slots: bytes
    version: int = FORMAT_VERSION
    flags: int = 0
    rs_n: int = rs.N
    rs_nsym: int = rs.NSYM
    hash_alg: int = HASH_BLAKE2B
    compression: int = COMPRESSION_ZSTD
    cipher: int = CIPHER_AES256GCM_STREAM

    def pack(self) -> bytes:
        fixed = HEADER_FIXED.pack(
            self.version, self.flags, self.file_id, self.created, self.block_size, self.rs_n,
            self.rs_nsym, self.hash_alg, self.compression, self.cipher, 0, 0, 0, self.chunk_size,
            len(self.slots),
        )
        return fixed + self.slots

    @classmethod
    def unpack(cls, payload: bytes) -> Header:
        if len(payload) < HEADER_FIXED.size:
            raise NotSealedError("the header is too short to be a sealed backup's header")
        (version, flags, file_id, created, block_size, rs_n, rs_nsym, hash_alg, compression, cipher,
         _, _, _, chunk_size, slots_length) = HEADER_FIXED.unpack_from(payload)
        if version != FORMAT_VERSION:
            raise UnsupportedVersionError(
                f"this file is format version {version}; this dbs_admin reads version {FORMAT_VERSION} "
                "only: upgrade dbs_admin to read it"
            )
        if (rs_n, rs_nsym, hash_alg, compression, cipher) != (
            rs.N, rs.NSYM, HASH_BLAKE2B, COMPRESSION_ZSTD, CIPHER_AES256GCM_STREAM,
        ) or flags != 0:
            raise UnsupportedVersionError("this file uses coding parameters this dbs_admin does not know")
        if not (1024 <= block_size <= 1 << 24) or len(payload) != HEADER_FIXED.size + slots_length:
            raise NotSealedError("the header's sizes are inconsistent")
        return cls(file_id=file_id, created=created, block_size=block_size, chunk_size=chunk_size,
                   slots=payload[HEADER_FIXED.size:], version=version, flags=flags)


@dataclass(frozen=True)
class Table:
    """The block table: where the two copies are and what every block must hash to."""

    file_id: bytes
    header_digest: bytes
    data_length: int
    block_count: int
    block_size: int
    copy_offsets: tuple[int, int]
    entries: bytes  # block_count * TABLE_ENTRY_SIZE

    def pack(self) -> bytes:
        return TABLE_FIXED.pack(self.file_id, self.header_digest, self.data_length, self.block_count,
                                self.block_size, TABLE_ENTRY_SIZE, *self.copy_offsets) + self.entries

    @classmethod
    def unpack(cls, payload: bytes) -> Table:
        if len(payload) < TABLE_FIXED.size:
            raise ValueError("block table too short")
        (file_id, digest, data_length, block_count, block_size, entry_size, copy_a,
         copy_b) = TABLE_FIXED.unpack_from(payload)
        entries = payload[TABLE_FIXED.size:]
        if entry_size != TABLE_ENTRY_SIZE or len(entries) != block_count * entry_size:
            raise ValueError("block table entries are inconsistent")
        if block_count != -(-data_length // block_size):
            raise ValueError("block table counts are inconsistent")
        return cls(file_id, digest, data_length, block_count, block_size, (copy_a, copy_b), entries)

    def data_hash(self, index: int) -> bytes:
        start = index * TABLE_ENTRY_SIZE
        return self.entries[start : start + DATA_HASH_SIZE]

    def parity_hash(self, index: int) -> bytes:
        start = index * TABLE_ENTRY_SIZE + DATA_HASH_SIZE
        return self.entries[start : start + PARITY_HASH_SIZE]

    def length(self, index: int) -> int:
        return block_length(index, self.block_count, self.data_length, self.block_size)

    def record_offset(self, copy: int, index: int) -> int:
        full = self.block_size + rs.parity_size(self.block_size)
        return self.copy_offsets[copy] + index * full


@dataclass(frozen=True)
class Locator:
    """Offsets of every region; stored as the last record of the file (fixed size)."""

    file_id: bytes
    headers: tuple[int, int]
    header_length: int
    tables: tuple[int, int]
    table_length: int
    manifests: tuple[int, int]
    manifest_length: int
    copies: tuple[int, int]
    total_size: int

    def pack(self) -> bytes:
        return LOCATOR.pack(self.file_id, *self.headers, self.header_length, *self.tables,
                            self.table_length, *self.manifests, self.manifest_length, *self.copies,
                            self.total_size)

    @classmethod
    def unpack(cls, payload: bytes) -> Locator:
        v = LOCATOR.unpack(payload)
        return cls(v[0], (v[1], v[2]), v[3], (v[4], v[5]), v[6], (v[7], v[8]), v[9], (v[10], v[11]), v[12])


LOCATOR_RECORD_SIZE = record_size(LOCATOR.size)


def rs_overhead() -> float:
    """Parity bytes per data byte of a full block."""
    return rs.parity_size(BLOCK_SIZE) / BLOCK_SIZE
