"""Data block records: encoding them, and reading them back healed.

A block record is the block's data followed by its interleaved RS parity.
The block table holds, per block, BLAKE2b-256 of the data and BLAKE2b-128 of
the parity. Clean data is recognised by its hash alone (fast); the RS decoder
only ever runs on blocks whose data hash fails in both copies, and whatever it
produces must hash right too, so no unverified byte is ever returned.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from dbs_admin.sealed import rs
from dbs_admin.sealed.errors import UnrecoverableError
from dbs_admin.sealed.layout import DATA_HASH_SIZE, PARITY_HASH_SIZE, Table, blake2b
from dbs_admin.sealed.metadata import read_exact_at

BATCH_BLOCKS = 32  # blocks encoded / read per numpy batch (2 MiB): amortises per-call overhead


def record_crc(data: bytes | memoryview, parity: bytes | memoryview) -> int:
    """CRC-32 of one record (data, then parity): what the writer notes and its read-back compares."""
    return zlib.crc32(parity, zlib.crc32(data))


def block_parities(buf: bytes | bytearray | memoryview, block_size: int) -> list[bytes]:
    """RS parity of each block in ``buf`` (whole blocks, except that the last may be short)."""
    view = memoryview(buf)
    full = len(view) // block_size
    parities = rs.pieces_parity(view[: full * block_size], full) if full else []
    if len(view) > full * block_size:
        parities.append(rs.piece_parity(view[full * block_size :]))
    return parities


def assemble_records(
    buf: bytes | bytearray | memoryview, parities: list[bytes], block_size: int
) -> tuple[bytearray, bytearray, list[int]]:
    """(records, table entries, CRC-32 of each record) for the blocks of ``buf`` and their parities."""
    view = memoryview(buf)
    records = bytearray()
    entries = bytearray()
    crcs = []
    for i, parity in enumerate(parities):
        data = view[i * block_size : min((i + 1) * block_size, len(view))]
        records += data
        records += parity
        entries += blake2b(data, DATA_HASH_SIZE)
        entries += blake2b(parity, PARITY_HASH_SIZE)
        crcs.append(record_crc(data, parity))
    return records, entries, crcs


@dataclass
class PreparedBatch:
    """A batch of whole blocks made ready to write: data and parity views in record order, table entries, CRCs."""

    pieces: list[memoryview | bytes]
    entries: bytes
    crcs: list[int]
    length: int
    blocks: int


def prepare_batch(buf: bytes, block_size: int) -> PreparedBatch:
    """Parity, hashes and CRC-32 of every block of ``buf``, without copying the data into records.

    Why: the writer hands ``pieces`` to ``os.writev`` as they are, and a worker
    thread can run this whole step (numpy, BLAKE2b and zlib release the GIL for
    most of it) while the writer encrypts and writes another batch.
    """
    view = memoryview(buf)
    parities = block_parities(view, block_size)
    pieces: list[memoryview | bytes] = []
    entries = bytearray()
    crcs = []
    for i, parity in enumerate(parities):
        data = view[i * block_size : min((i + 1) * block_size, len(view))]
        pieces.append(data)
        pieces.append(parity)
        entries += blake2b(data, DATA_HASH_SIZE)
        entries += blake2b(parity, PARITY_HASH_SIZE)
        crcs.append(record_crc(data, parity))
    return PreparedBatch(pieces, bytes(entries), crcs, len(view), len(parities))


@dataclass
class BlockSummary:
    """Result of checking every block of both copies (the keyless verify)."""

    block_count: int
    damaged: list[int] = field(default_factory=list)  # some copy damaged, data recovered
    repaired: list[int] = field(default_factory=list)  # subset of damaged that needed RS
    unrecoverable: list[int] = field(default_factory=list)
    min_copies_intact: int = 2


class BlockReader:
    """Reads the data stream of a file, block by block, healing on the way."""

    def __init__(self, f: BinaryIO, file_size: int, table: Table):
        self.f = f
        self.size = file_size
        self.table = table
        self.healed: list[int] = []

    def _span(self, copy: int, first: int, last: int) -> tuple[bytes, np.ndarray | None, int]:
        """Raw bytes of records first..last (inclusive) of one copy, with the missing mask."""
        start = self.table.record_offset(copy, first)
        length = self.table.length(last)
        end = self.table.record_offset(copy, last) + length + rs.parity_size(length)
        data, missing = read_exact_at(self.f, start, end - start, self.size)
        return data, missing, start

    def _split(
        self, copy: int, first: int, last: int
    ) -> Iterator[tuple[int, memoryview, memoryview, np.ndarray | None]]:
        data, missing, start = self._span(copy, first, last)
        view = memoryview(data)
        for i in range(first, last + 1):
            rel = self.table.record_offset(copy, i) - start
            length = self.table.length(i)
            plen = rs.parity_size(length)
            m = None if missing is None else missing[rel : rel + length + plen]
            if m is not None and not m.any():
                m = None
            yield i, view[rel : rel + length], view[rel + length : rel + length + plen], m

    def record(self, copy: int, index: int) -> tuple[bytes, bytes, np.ndarray | None]:
        """(data, parity, missing mask or None) of one copy of one block."""
        for _, data, parity, missing in self._split(copy, index, index):
            return bytes(data), bytes(parity), missing
        raise IndexError(index)

    def repair(self, index: int) -> bytes | None:
        """The block's data from whichever copy verifies, else from RS over both copies; None if lost."""
        expected = self.table.data_hash(index)
        copies = [self.record(0, index), self.record(1, index)]
        for data, _, _ in copies:
            if blake2b(data, DATA_HASH_SIZE) == expected:
                return data
        result = rs.repair_piece(self.table.length(index), copies)
        if result.data is not None and blake2b(result.data, DATA_HASH_SIZE) == expected:
            return result.data
        return None

    def _batches(self, start: int) -> Iterator[tuple[int, int]]:
        for first in range(start, self.table.block_count, BATCH_BLOCKS):
            yield first, min(first + BATCH_BLOCKS, self.table.block_count) - 1

    def _copy_a_checked(self, first: int, last: int) -> list[tuple[int, memoryview, bool]]:
        """Copy A's data of blocks first..last, each with whether it matches its hash."""
        return [(i, data, blake2b(data, DATA_HASH_SIZE) == self.table.data_hash(i))
                for i, data, _, _ in self._split(0, first, last)]

    def iter_data(self, start: int = 0) -> Iterator[bytes]:
        """The data stream, verified block by block; raises UnrecoverableError naming every lost block.

        The next batch is read and hashed on a worker thread (pread and
        BLAKE2b release the GIL) while the consumer decrypts this one.
        """
        pool = ThreadPoolExecutor(1, thread_name_prefix="dbs-read")
        try:
            batches = self._batches(start)
            pending = [pool.submit(self._copy_a_checked, *b) for b in itertools.islice(batches, 1)]
            while pending:
                checked = pending.pop().result()
                pending.extend(pool.submit(self._copy_a_checked, *b) for b in itertools.islice(batches, 1))
                for i, data, ok in checked:
                    if ok:
                        yield bytes(data)
                        continue
                    healed = self.repair(i)
                    if healed is None:
                        rest = range(i + 1, self.table.block_count)
                        lost = [i] + [j for j in rest if self.repair(j) is None]
                        raise UnrecoverableError(
                            f"{len(lost)} data block(s) are damaged beyond repair in both copies: "
                            f"{_names(lost)}; nothing from block {i} on can be returned",
                            blocks=tuple(lost),
                        )
                    self.healed.append(i)
                    yield healed
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _status(self, copy: int, first: int, last: int) -> np.ndarray:
        """(data ok, parity ok) per block of one copy."""
        status = np.zeros((last - first + 1, 2), dtype=bool)
        for i, data, parity, _ in self._split(copy, first, last):
            status[i - first, 0] = blake2b(data, DATA_HASH_SIZE) == self.table.data_hash(i)
            status[i - first, 1] = blake2b(parity, PARITY_HASH_SIZE) == self.table.parity_hash(i)
        return status

    def check_all(self, progress: Callable[[int, int], None] | None = None) -> BlockSummary:
        """Check data and parity hashes of every block in both copies (no key needed).

        Copy B is hashed on a worker thread while copy A is hashed here. ``progress(blocks done, blocks)``
        after each batch.
        """
        summary = BlockSummary(self.table.block_count)
        with ThreadPoolExecutor(1, thread_name_prefix="dbs-verify") as pool:
            for first, last in self._batches(0):
                future = pool.submit(self._status, 1, first, last)
                # status[copy, block] = (data ok, parity ok)
                status = np.stack([self._status(0, first, last), future.result()])
                for rel in range(last - first + 1):
                    i = first + rel
                    intact = int(status[0, rel].all()) + int(status[1, rel].all())
                    summary.min_copies_intact = min(summary.min_copies_intact, intact)
                    if intact == 2:
                        continue
                    if status[:, rel, 0].any():
                        summary.damaged.append(i)
                    elif self.repair(i) is not None:
                        summary.damaged.append(i)
                        summary.repaired.append(i)
                    else:
                        summary.unrecoverable.append(i)
                if progress is not None:
                    progress(last + 1, self.table.block_count)
        return summary


def _names(blocks: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(b) for b in blocks[:limit])
    return shown + (f" and {len(blocks) - limit} more" if len(blocks) > limit else "")
