"""Content-defined chunking: where a byte stream, or a stream of records, is cut into chunks.

Why content-defined: a cut decided by the bytes themselves (not by offsets)
lands in the same places after an insertion or deletion earlier in the
stream, so an edit touches only the chunks around it and every other chunk
deduplicates.

Two chunkers:

* ``cdc_chunks`` cuts an opaque byte stream (a media file, a native dump)
  with FastCDC (the ``pyfastcdc`` library, a C extension). Measured here on
  32 MiB of random bytes: 0.05 s with pyfastcdc against 9.9 s for a
  vectorised numpy gear hash of our own, so the library it is.
* ``RecordChunker`` cuts *between* records (the rows of a table in primary-key
  order, or the 32-byte chunk ids of a list): a cut falls after a record whose
  own hash says so, once the chunk holds ``min_size`` bytes. A changed row
  therefore changes only the chunk holding it (and, rarely, moves the next
  cut), so it costs about its own size rather than a whole byte-level
  chunk's. A record larger than ``max_size`` is cut on its own with FastCDC.

Concatenating the chunks always gives back the input exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from pyfastcdc.cy import FastCDC

FILE_MIN, FILE_AVG, FILE_MAX = 16 << 10, 64 << 10, 256 << 10
ROW_MIN, ROW_AVG, ROW_MAX = 1 << 10, 4 << 10, 64 << 10


def cdc_chunks(pieces: Iterable[bytes], *, avg_size: int = FILE_AVG, min_size: int = FILE_MIN,
               max_size: int = FILE_MAX) -> Iterator[bytes]:
    """Chunks of the concatenated ``pieces`` (FastCDC, normalised chunking level 1)."""
    cdc = FastCDC(avg_size=avg_size, min_size=min_size, max_size=max_size, normalized_chunking=1)
    buf = bytearray()
    window = max(4 * max_size, 4 << 20)
    for piece in pieces:
        buf += piece
        if len(buf) < window:
            continue
        view = bytes(buf)
        consumed = 0
        for chunk in cdc.cut_buf(view):
            if chunk.offset + chunk.length == len(view):
                break  # the last cut may move when more bytes come: keep it for the next round
            yield view[chunk.offset : chunk.offset + chunk.length]
            consumed = chunk.offset + chunk.length
        del buf[:consumed]
    if buf:
        view = bytes(buf)
        for chunk in cdc.cut_buf(view):
            yield view[chunk.offset : chunk.offset + chunk.length]


class RecordChunker:
    """Cuts a stream of records at record boundaries chosen by content (see the module docstring).

    ``feed(record)`` returns the chunks completed by that record (usually none);
    ``finish()`` returns the rest.
    """

    def __init__(self, *, avg_size: int = ROW_AVG, min_size: int = ROW_MIN, max_size: int = ROW_MAX):
        self.avg, self.min, self.max = avg_size, min_size, max_size
        self._buf = bytearray()

    def _cut_after(self, record: bytes | memoryview) -> bool:
        size = len(self._buf)
        if size >= self.max:
            return True
        if size < self.min:
            return False
        # A cut after this record with probability about len(record) / (avg - min): chunks average ``avg``.
        threshold = min(1.0, len(record) / max(1, self.avg - self.min))
        return zlib.crc32(record) < threshold * 0xFFFFFFFF

    def feed(self, record: bytes | memoryview) -> list[bytes]:
        if len(record) > self.max:
            out = [bytes(self._buf)] if self._buf else []
            self._buf = bytearray()
            out.extend(cdc_chunks([bytes(record)], avg_size=FILE_AVG, min_size=FILE_MIN, max_size=FILE_MAX))
            return out
        self._buf += record
        if self._cut_after(record):
            out = [bytes(self._buf)]
            self._buf = bytearray()
            return out
        return []

    def feed_many(self, records: Iterable[bytes]) -> list[bytes]:
        """``feed`` for each record in turn (the same cuts), in one loop: rows come by the thousand."""
        out: list[bytes] = []
        buf = self._buf
        low, high, span = self.min, self.max, max(1, self.avg - self.min)
        crc32 = zlib.crc32
        for record in records:
            n = len(record)
            if n > high:
                self._buf = buf
                out.extend(self.feed(record))
                buf = self._buf
                continue
            buf += record
            size = len(buf)
            if size >= high or (size >= low and crc32(record) < min(1.0, n / span) * 0xFFFFFFFF):
                out.append(bytes(buf))
                buf = bytearray()
        self._buf = buf
        return out

    def feed_pairs(self, records: Iterable[tuple[bytes, bytes | memoryview]]) -> list[bytes]:
        """``feed(head + tail)`` for each ``(head, tail)`` in turn (the same cuts), without joining the two:
        a row is a frame prefix the caller made and a slice of the batch it came in, appended as they are."""
        out: list[bytes] = []
        buf = self._buf
        low, high, span = self.min, self.max, max(1, self.avg - self.min)
        crc32 = zlib.crc32
        for head, tail in records:
            n = len(head) + len(tail)
            if n > high:
                self._buf = buf
                out.extend(self.feed(bytes(head) + bytes(tail)))
                buf = self._buf
                continue
            buf += head
            buf += tail
            size = len(buf)
            if size >= high or (size >= low and crc32(tail, crc32(head)) < min(1.0, n / span) * 0xFFFFFFFF):
                out.append(bytes(buf))
                buf = bytearray()
        self._buf = buf
        return out

    def finish(self) -> list[bytes]:
        out = [bytes(self._buf)] if self._buf else []
        self._buf = bytearray()
        return out


def record_chunks(records: Iterable[bytes], **sizes: int) -> Iterator[bytes]:
    """All chunks of a stream of records (see ``RecordChunker``)."""
    chunker = RecordChunker(**sizes)
    for record in records:
        yield from chunker.feed(record)
    yield from chunker.finish()
