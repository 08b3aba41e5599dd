"""Self-checking, Reed-Solomon protected metadata records (header, block table, manifest, locator).

A record is a fixed-size *prefix* followed by its payload. The prefix is one
shortened RS codeword (68 message bytes + 32 parity), so up to 16 damaged
bytes in it are corrected; it carries the magic, the kind, the payload length
and the payload's BLAKE2b-256. The payload is stored in pieces of 64 KiB,
each followed by its interleaved parity (see ``rs``). Every record exists in
two copies at distant offsets; healing uses either copy, RS on each, and
finally both copies together (positions where they differ become erasures).
A record is accepted only when its payload hashes to the prefix's digest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from dbs_admin.sealed import rs
from dbs_admin.sealed.errors import UnsupportedVersionError
from dbs_admin.sealed.layout import FORMAT_VERSION, KIND_NAMES, MAGIC, META_PIECE_SIZE, PREFIX, PREFIX_SIZE, blake2b

_PREFIX_MSG = PREFIX.size  # 68


@dataclass(frozen=True)
class Prefix:
    """A decoded record prefix; ``repaired`` says whether RS had to correct it."""

    kind: int
    version: int
    copy: int
    file_id: bytes
    length: int
    digest: bytes
    repaired: bool


def _prefix_parity(message: bytes) -> bytes:
    matrix = np.frombuffer(message, dtype=np.uint8).reshape(-1, 1)
    return rs.encode_parity(matrix)[:, 0].tobytes()


def encode_record(kind: int, copy: int, file_id: bytes, payload: bytes) -> bytes:
    """The on-disk bytes of one copy of a record."""
    message = PREFIX.pack(MAGIC, kind, FORMAT_VERSION, copy, 0, file_id, len(payload),
                          blake2b(payload, 32))
    out = bytearray(message)
    out += _prefix_parity(message)
    view = memoryview(payload)
    for start in range(0, len(payload), META_PIECE_SIZE):
        piece = view[start : start + META_PIECE_SIZE]
        out += piece
        out += rs.piece_parity(piece)
    return bytes(out)


def decode_prefix(raw: bytes) -> Prefix | None:
    """Decode a prefix (healing up to 16 bytes); None if these bytes are not a record prefix.

    Raises UnsupportedVersionError for a valid prefix of another format version.
    """
    if len(raw) != PREFIX_SIZE:
        return None
    message, parity = raw[:_PREFIX_MSG], raw[_PREFIX_MSG:]
    repaired = False
    if _prefix_parity(message) != parity:
        padded = np.zeros(rs.N, dtype=np.uint8)
        padded[rs.K - _PREFIX_MSG :] = np.frombuffer(raw, dtype=np.uint8)
        fixed = rs._decode(padded, [])
        if fixed is None or fixed[: rs.K - _PREFIX_MSG].any():
            return None
        message = fixed[rs.K - _PREFIX_MSG : rs.K].tobytes()
        repaired = True
    magic, kind, version, copy, _, file_id, length, digest = PREFIX.unpack(message)
    if magic != MAGIC:
        return None
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"this file is format version {version}; this dbs_admin reads version {FORMAT_VERSION} only"
        )
    if kind not in KIND_NAMES or length > 1 << 40:
        return None
    return Prefix(kind, version, copy, file_id, length, digest, repaired)


def _reader_at(f: BinaryIO):
    """``read(n, offset)`` for ``f``: pread on a real file (no shared position, so several threads may read
    one file), else seek and read (a remote file read by ranges, which has no descriptor)."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):
        def seek_and_read(n: int, at: int) -> bytes:
            f.seek(at)
            return f.read(n) or b""

        return seek_and_read
    return lambda n, at: os.pread(fd, n, at)


def read_exact_at(f: BinaryIO, offset: int, length: int, file_size: int) -> tuple[bytes, np.ndarray | None]:
    """Read ``length`` bytes at ``offset``; bytes outside the file come back as zeros.

    Returns the bytes and a mask of the missing (unreadable) positions, or
    None when nothing was missing, so truncation (or a cut-off start, which
    makes offsets negative) becomes known erasures.
    """
    if length < 0:
        raise ValueError("negative length")
    lo = min(max(offset, 0), offset + length)
    hi = max(lo, min(offset + length, file_size))
    data = b""
    if hi > lo:
        read_at = _reader_at(f)
        data = read_at(hi - lo, lo)
        while len(data) < hi - lo:
            more = read_at(hi - lo - len(data), lo + len(data))
            if not more:
                break
            data += more
    before = lo - offset
    if before == 0 and len(data) == length:
        return data, None
    missing = np.ones(length, dtype=bool)
    missing[before : before + len(data)] = False
    return bytes(before) + data + bytes(length - before - len(data)), missing


def read_prefix(f: BinaryIO, offset: int, file_size: int) -> Prefix | None:
    """The prefix of the record at ``offset``, or None if there is none there."""
    if offset < 0 or offset + PREFIX_SIZE > file_size:
        return None
    raw, _ = read_exact_at(f, offset, PREFIX_SIZE, file_size)
    return decode_prefix(raw)


def _piece_spans(length: int) -> Iterator[tuple[int, int, int]]:
    """(payload start, piece length, offset of the piece within the record) for each piece."""
    pos = PREFIX_SIZE
    for start in range(0, length, META_PIECE_SIZE):
        size = min(META_PIECE_SIZE, length - start)
        yield start, size, pos
        pos += size + rs.parity_size(size)


@dataclass
class RecordResult:
    """The payload of a record (None if lost) and how many of its copies were intact."""

    payload: bytes | None
    copies_found: int
    copies_intact: int
    repaired: bool


def recover_record(f: BinaryIO, file_size: int, candidates: list[tuple[int, Prefix]]) -> RecordResult:
    """Recover one record's payload from its copies (offset, prefix) found in the file.

    Copies that agree on (length, digest) are healed together; the group
    backed by most copies is tried first. A copy is intact when its prefix
    needed no repair and its payload hashes right without repair.
    """
    groups: dict[tuple[int, bytes], list[tuple[int, Prefix]]] = {}
    for offset, prefix in candidates:
        if prefix.length > file_size:  # cannot be real; never allocate what a forged length asks
            continue
        groups.setdefault((prefix.length, prefix.digest), []).append((offset, prefix))
    ordered = sorted(groups.values(), key=len, reverse=True)
    for group in ordered:
        length, digest = group[0][1].length, group[0][1].digest
        raw_copies = []
        payload = None
        intact = 0
        for offset, prefix in group:
            pieces = []
            for _, size, rel in _piece_spans(length):
                data, missing_d = read_exact_at(f, offset + rel, size, file_size)
                parity, missing_p = read_exact_at(f, offset + rel + size, rs.parity_size(size), file_size)
                missing = None
                if missing_d is not None or missing_p is not None:
                    missing = np.concatenate([
                        missing_d if missing_d is not None else np.zeros(size, dtype=bool),
                        missing_p if missing_p is not None else np.zeros(len(parity), dtype=bool),
                    ])
                pieces.append((data, parity, missing))
            raw_copies.append(pieces)
            joined = b"".join(p[0] for p in pieces)
            if blake2b(joined, 32) == digest:
                if payload is None:
                    payload = joined
                intact += 0 if prefix.repaired else 1
        if payload is not None:
            return RecordResult(payload, len(group), intact, intact == 0)
        healed = []
        for i, (_, size, _) in enumerate(_piece_spans(length)):
            result = rs.repair_piece(size, [copy[i] for copy in raw_copies[:2]])
            if result.data is None:
                break
            healed.append(result.data)
        else:
            joined = b"".join(healed)
            if blake2b(joined, 32) == digest:
                return RecordResult(joined, len(group), 0, True)
    return RecordResult(None, len(candidates), 0, False)


def scan(f: BinaryIO, file_size: int, window: int = 1 << 22) -> Iterator[tuple[int, Prefix]]:
    """Find every record in the file by its magic (used when the locator is lost)."""
    overlap = len(MAGIC) - 1
    pos = 0
    while pos < file_size:
        chunk, _ = read_exact_at(f, pos, min(window + overlap, file_size - pos), file_size)
        if not chunk:
            break
        hit = chunk.find(MAGIC)
        while hit != -1:
            if hit < window or pos + window >= file_size:
                try:
                    prefix = read_prefix(f, pos + hit, file_size)
                except UnsupportedVersionError:
                    prefix = None
                if prefix is not None:
                    yield pos + hit, prefix
            hit = chunk.find(MAGIC, hit + 1)
        pos += window


def file_size_of(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
