"""Writing the container around an already-encrypted data stream.

Used by ``seal`` (which feeds it fresh ciphertext) and by ``heal`` (which
feeds it the healed ciphertext of a damaged file, without any key). The
byte layout it produces is the one in docs/FORMAT.md:

    header#0 | copy A | table#0 | manifest#0 | copy B | header#1 | table#1 | manifest#1 | locator

Copy B is written last from copy A's bytes on disk (``copy_file_range``), so
the writer never holds more than one batch of blocks in memory, and the two
copies of any block are about half a file apart.

Each batch of blocks (2 MiB) gets its parity, hashes and CRCs on one of two
workers (``prepare_batch``), so two batches are encoded side by side while the
writer thread encrypts the next; the writer then writes the data and parity
views as they are, in order (no record is assembled by copying).

The file's SHA-256 (what targets and download links check) is computed along
the way rather than by reading the finished file again: everything up to copy
B is hashed as it is written, on the writer thread; copy B and the records
after it are hashed while verify-after-write reads them back.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from dbs_admin.sealed.atomic import EarlyWriteback, write_all
from dbs_admin.sealed.blocks import BATCH_BLOCKS, BlockReader, prepare_batch, record_crc
from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.layout import (
    KIND_HEADER,
    KIND_LOCATOR,
    KIND_MANIFEST,
    KIND_TABLE,
    Header,
    Locator,
    Table,
    copy_size,
    header_digest,
)
from dbs_admin.sealed.metadata import encode_record, file_size_of, read_exact_at
from dbs_admin.sealed.rs_params import parity_size
from dbs_admin.sealed.structure import load_structure

# Batches prepared side by side (parity, hashes): one per core of a small machine, without holding much memory.
PREPARE_DEPTH = 2


def _copy_range(f: BinaryIO, src: int, dst: int, length: int) -> None:
    """Copy ``length`` bytes of ``f`` from ``src`` to ``dst`` (in-kernel where possible)."""
    fd = f.fileno()
    done = 0
    copy_file_range = getattr(os, "copy_file_range", None)
    while copy_file_range is not None and done < length:
        try:
            n = copy_file_range(fd, fd, length - done, src + done, dst + done)
        except OSError:
            break
        if n <= 0:
            break
        done += n
    while done < length:
        n = min(1 << 22, length - done)
        chunk = os.pread(fd, n, src + done)
        if not chunk:
            raise OSError("short read while duplicating the data stream")
        view = memoryview(chunk)
        pos = dst + done
        while view:
            w = os.pwrite(fd, view, pos)
            view = view[w:]
            pos += w
        done += len(chunk)


class ContainerWriter:
    """Lays out one sealed file. Call ``feed`` with the data stream, then ``finish``."""

    def __init__(self, f: BinaryIO, header: Header, header_payload: bytes | None = None, *, hash_file: bool = False,
                 read_back: bool = False):
        """``header_payload`` lets ``heal`` keep the original bytes (the AEAD binds their digest).

        ``hash_file``: compute the finished file's SHA-256 (returned by ``check_written``).
        ``read_back``: the caller will call ``check_written``; the data records are then read back and
        checked while the file is still being written (see ``check_written``) instead of all at the end.
        """
        self.f = f
        self.header = header
        self.header_payload = header.pack() if header_payload is None else header_payload
        self.digest = header_digest(self.header_payload)
        self.block_size = header.block_size
        header_record = encode_record(KIND_HEADER, 0, header.file_id, self.header_payload)
        f.seek(0)
        write_all(f, header_record)
        self._sha256 = hashlib.sha256(header_record) if hash_file else None  # the file's bytes in order, to copy B
        self._tail: list[bytes] = []  # the records after copy B, hashed once copy B has been read back
        self.copy_b = self.total_size = 0  # known once ``finish`` has laid out the rest
        self.copy_a = len(header_record)
        self.offset = self.copy_a
        self.data_length = 0
        self.block_count = 0
        self.entries = bytearray()
        self.crcs = array.array("L")
        self._pending = bytearray()
        self._batch = BATCH_BLOCKS * self.block_size
        self._pool = ThreadPoolExecutor(PREPARE_DEPTH, thread_name_prefix="dbs-parity")
        self._inflight: deque[Future] = deque()
        self._writeback = EarlyWriteback(f.fileno())
        # one thread, so read-back jobs run in file order (copy B's SHA-256 is extended by them, in order)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="dbs-readback") if read_back else None
        self._read_back: list[Future] = []

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes of the data stream (any sizes)."""
        self._pending += data
        if len(self._pending) >= self._batch:
            whole = len(self._pending) - len(self._pending) % self.block_size
            with memoryview(self._pending) as view:
                chunk = bytes(view[:whole])
            del self._pending[:whole]
            self._emit(chunk)

    def _emit(self, buf: bytes) -> None:
        """Hand ``buf`` to a worker (parity, hashes, CRCs), then write the batches that are ready, in order.

        Up to ``PREPARE_DEPTH`` batches are prepared at once, one per worker:
        the numpy encoder and BLAKE2b release the GIL for most of their work,
        so on two cores two batches are encoded side by side while this thread
        goes back to produce the next one through zstd and AES-GCM.
        """
        self._inflight.append(self._pool.submit(prepare_batch, buf, self.block_size))
        while len(self._inflight) > PREPARE_DEPTH:
            self._drain_one()

    def _drain(self) -> None:
        while self._inflight:
            self._drain_one()

    def _drain_one(self) -> None:
        batch = self._inflight.popleft().result()
        # With read-back, copy A is hashed by the read-back thread from the bytes it reads (in file order), not here
        sha256 = self._sha256 if self._reader is None else None
        for piece in batch.pieces:
            write_all(self.f, piece)
            if sha256 is not None:
                sha256.update(piece)
        written = batch.length + sum(len(p) for p in batch.pieces[1::2])
        self._writeback.wrote(written)
        if self._reader is not None:
            self._read_back.append(self._reader.submit(
                self._check_records, self.offset, [len(p) for p in batch.pieces], batch.crcs, self.block_count,
                self._sha256))
        self.offset += written
        self.entries += batch.entries
        self.crcs.extend(batch.crcs)
        self.data_length += batch.length
        self.block_count += batch.blocks

    def _hash_in_order(self, record: bytes) -> None:
        """A read-back job that only extends the file's SHA-256 (returns None: nothing to check)."""
        self._sha256.update(record)

    def _check_records(self, offset: int, lengths: list[int], crcs, first: int, sha256) -> int | None:
        """Read back the records of blocks ``first``... at ``offset`` (data and parity ``lengths``, alternating),
        compare each with the CRC-32 it was written with (``crcs``), and extend ``sha256`` with the bytes read.
        Returns the first block that differs, or None."""
        total = sum(lengths)
        data, missing = read_exact_at(self.f, offset, total, offset + total)
        if missing is not None:
            return first
        if sha256 is not None:
            sha256.update(data)
        view = memoryview(data)
        pos = 0
        for k in range(0, len(lengths), 2):
            end = pos + lengths[k]
            if record_crc(view[pos:end], view[end : end + lengths[k + 1]]) != crcs[k // 2]:
                return first + k // 2
            pos = end + lengths[k + 1]
        return None

    def close(self) -> None:
        """Stop the worker threads (idempotent; ``finish`` calls it); raise a failed background flush."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._writeback.close()

    def check_written(self, path: Path) -> str | None:
        """Verify-after-write: the file re-read from ``path`` is exactly what was written; returns its SHA-256.

        With ``read_back`` the data records of both copies were already read back and checked against their
        CRC-32s as they were written (copy A batch by batch during the stream, copy B batch by batch as it was
        copied, on one thread of their own), so only the metadata is read here and those checks are awaited.
        Otherwise, as follows.

        Metadata goes through the reader's own discovery and healing (it must
        come back intact, from both copies, without scanning); copy B must be
        byte-identical to copy A, and every record of copy A must have the
        CRC-32 it had when it was written, which proves its bytes are the ones
        whose BLAKE2b hashes the table holds, at a fraction of the cost of
        re-hashing both copies. Copy B's bytes as read back here, then the
        trailing records, complete the SHA-256 begun while writing (None unless ``hash_file``).
        """
        sha256 = self._sha256.copy() if self._sha256 is not None else None
        with open(path, "rb") as f:
            size = file_size_of(f)
            st = load_structure(f, size)
            if (st.scanned or st.damaged_regions or st.header_payload != self.header_payload
                    or st.table.entries != bytes(self.entries) or size != self.total_size
                    or st.table.copy_offsets != (self.copy_a, self.copy_b)):
                raise SealedError(f"verification after writing {path} failed: the metadata did not read back")
            if self._reader is not None:
                return self._checked_while_writing(path)
            reader = BlockReader(f, size, st.table)
            for first in range(0, st.table.block_count, BATCH_BLOCKS):
                last = min(first + BATCH_BLOCKS, st.table.block_count) - 1
                span_a, missing_a, _ = reader._span(0, first, last)
                span_b, missing_b, _ = reader._span(1, first, last)
                same = missing_a is None and missing_b is None and span_a == span_b
                for i, data, parity, _ in reader._split(0, first, last) if same else ():
                    if record_crc(data, parity) != self.crcs[i]:
                        same = False
                        break
                if not same:
                    raise SealedError(
                        f"verification after writing {path} failed near block {first}: "
                        "the storage does not return what was written"
                    )
                if sha256 is not None:
                    sha256.update(span_b)
        if sha256 is None:
            return None
        for record in self._tail:
            sha256.update(record)
        return sha256.hexdigest()

    def finish(self, manifest_payload: bytes) -> int:
        """Write the rest of the layout; returns the total file size."""
        if self._pending:
            self._emit(bytes(self._pending))
            self._pending = bytearray()
        self._drain()
        self.close()
        size_a = copy_size(self.block_count, self.data_length, self.block_size)
        assert self.offset == self.copy_a + size_a
        file_id = self.header.file_id
        table_len = len(encode_record(KIND_TABLE, 0, file_id, self._table(0, 0).pack()))
        manifest_len = len(encode_record(KIND_MANIFEST, 0, file_id, manifest_payload))
        table_0 = self.copy_a + size_a
        manifest_0 = table_0 + table_len
        copy_b = manifest_0 + manifest_len
        table_payload = self._table(self.copy_a, copy_b).pack()
        f = self.f
        for record in (encode_record(KIND_TABLE, 0, file_id, table_payload),
                       encode_record(KIND_MANIFEST, 0, file_id, manifest_payload)):
            write_all(f, record)
            if self._sha256 is None:
                continue
            if self._reader is None:
                self._sha256.update(record)
            else:  # after copy A's read-back jobs, which hash it: the read-back thread keeps the file's order
                self._read_back.append(self._reader.submit(self._hash_in_order, record))
        f.flush()
        if self._reader is None:
            _copy_range(f, self.copy_a, copy_b, size_a)
        else:
            self._copy_b_checked(copy_b)
        header_1 = copy_b + size_a
        header_len = len(encode_record(KIND_HEADER, 1, file_id, self.header_payload))
        table_1 = header_1 + header_len
        manifest_1 = table_1 + table_len
        locator_off = manifest_1 + manifest_len
        f.seek(header_1)
        locator = Locator(file_id, (0, header_1), header_len, (table_0, table_1), table_len,
                          (manifest_0, manifest_1), manifest_len, (self.copy_a, copy_b), 0)
        locator_len = len(encode_record(KIND_LOCATOR, 0, file_id, locator.pack()))
        total = locator_off + locator_len
        locator = dataclasses.replace(locator, total_size=total)
        self._tail = [encode_record(KIND_HEADER, 1, file_id, self.header_payload),
                      encode_record(KIND_TABLE, 1, file_id, table_payload),
                      encode_record(KIND_MANIFEST, 1, file_id, manifest_payload),
                      encode_record(KIND_LOCATOR, 0, file_id, locator.pack())]
        for record in self._tail:
            write_all(f, record)
        f.truncate(total)
        f.flush()
        self.copy_b, self.total_size = copy_b, total
        return total

    def _copy_b_checked(self, copy_b: int) -> None:
        """Copy B from copy A a batch of records at a time, each batch read back and checked (and hashed) on the
        read-back thread while the next is copied: the copy and its check overlap instead of following each other."""
        src, dst = self.copy_a, copy_b
        for first in range(0, self.block_count, BATCH_BLOCKS):
            last = min(first + BATCH_BLOCKS, self.block_count)
            lengths = []
            for i in range(first, last):
                data_len = min(self.block_size, self.data_length - i * self.block_size)
                lengths += (data_len, parity_size(data_len))
            span = sum(lengths)
            _copy_range(self.f, src, dst, span)
            self._read_back.append(self._reader.submit(
                self._check_records, dst, lengths, self.crcs[first:last], first, self._sha256))
            src += span
            dst += span

    def _checked_while_writing(self, path: Path) -> str | None:
        """``check_written`` when every record was read back as written (``read_back``): wait for those checks."""
        try:
            bad = [b for b in (job.result() for job in self._read_back) if b is not None]
        finally:
            self._reader.shutdown(wait=True)
        if bad:
            raise SealedError(f"verification after writing {path} failed near block {bad[0]}: "
                              "the storage does not return what was written")
        if self._sha256 is None:
            return None
        for record in self._tail:
            self._sha256.update(record)
        return self._sha256.hexdigest()

    def _table(self, copy_a: int, copy_b: int) -> Table:
        return Table(self.header.file_id, self.digest, self.data_length, self.block_count,
                     self.block_size, (copy_a, copy_b), bytes(self.entries))
