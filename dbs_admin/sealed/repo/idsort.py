"""Sorting the chunk index's ids without a second copy of them (``chunkindex`` builds with it).

Why: the ids are most of the index (32 of its ~48 bytes a chunk). Built the plain way (concatenate the ids
of every index object, argsort, gather), three id-sized arrays lived at once: ~160 MiB of RSS for a million
chunks against a goal of 100. Here each id is stored once, as it arrives, followed by its arrival number
(3 bytes, big-endian) in one ``S35`` record of an array grown in place. Sorting those records as bytes (numpy
sorts fixed-width bytes in place) orders them by id and, among equal ids, by arrival: the arrival numbers,
read a block at a time from the sorted records, put the other columns in the same order (no permutation
array), then the ids are moved down over the numbers in place (``S35`` → ``S32``) and the array shrunk.

Arrays are grown and shrunk with ``ndarray.resize`` (realloc: a large array's pages are moved, not
copied; numpy zero-fills the room added, so that room is kept small). That is only safe for an array
nothing else refers to, so the callers hand arrays over in a one-item list (:func:`resized`) and keep no
reference of their own.
"""

from __future__ import annotations

import sys

import numpy as np

ID = 32  # bytes of a chunk id; a record is an id then its arrival number (big-endian: bytes order as numbers)
BLOCK = 1 << 14  # records moved at a time when the ids are packed down (a 512 KiB temporary)
SLACK = 1 << 12  # entries of room an array grows by beyond what it needs (numpy zero-fills it: it is resident)


def grown(size: int, need: int) -> int:
    """The capacity for ``need`` entries: a little more (each growth is a realloc, which moves a large array's
    pages without copying them), but never much more: the room added is written with zeros, so it costs RSS."""
    return max(need, min(size + size // 2, need + SLACK), 1024)


def resized(box: list[np.ndarray], length: int) -> np.ndarray:
    """The array handed over in ``box`` (emptied: the caller keeps no reference), grown or shrunk to ``length``
    in place; a zero-filled copy when something else still refers to it (a view, an iteration over the index),
    which a realloc would leave dangling."""
    array = box.pop()
    if sys.getrefcount(array) <= 2 and array.flags.owndata:  # ``array`` here, and getrefcount's argument
        array.resize(length, refcheck=False)
        return array
    out = np.zeros(length, dtype=array.dtype)
    keep = min(length, len(array))
    out[:keep] = array[:keep]
    return out


class ArrivingIds:
    """Ids in the order they arrive, each with its arrival number, sorted and split without a second copy.

    The records live in one owning byte array (so it can be resized), read through ``S35``/``S36`` and ``S32``
    views. The arrival number takes 3 bytes while there are fewer than 2^24 ids (a million chunks: 35 bytes a
    record, not 36), 4 beyond (the records are then rewritten once, wider).
    """

    def __init__(self) -> None:
        self._bytes = np.empty(0, dtype=np.uint8)
        self.count = 0
        self._width = 3  # bytes of an arrival number

    def __len__(self) -> int:
        return self.count

    @property
    def _record(self) -> int:
        return ID + self._width

    def append(self, ids: np.ndarray) -> None:
        """Add ``ids`` (an ``S32`` array), the array grown in place when full (see :func:`grown`)."""
        need = self.count + len(ids)
        if need > 1 << (8 * self._width):
            self._widen()
        record = self._record
        capacity = len(self._bytes) // record
        if need > capacity:
            box, self._bytes = [self._bytes], None
            self._bytes = resized(box, grown(capacity, need) * record)
        rows = self._bytes[self.count * record : need * record].reshape(-1, record)
        rows[:, :ID] = np.ascontiguousarray(ids).view(np.uint8).reshape(-1, ID)
        numbers = np.arange(self.count, need, dtype=">u4").view(np.uint8).reshape(-1, 4)
        rows[:, ID:] = numbers[:, 4 - self._width :]
        self.count = need

    def _widen(self) -> None:
        """Arrival numbers of 4 bytes (past 2^24 ids with 3): the records written again, once."""
        old = self._bytes[: self.count * self._record].reshape(-1, self._record)
        wide = np.zeros((self.count, ID + 4), dtype=np.uint8)
        wide[:, :ID] = old[:, :ID]
        wide[:, ID + 4 - self._width :] = old[:, ID:]
        del old
        self._bytes, self._width = wide.reshape(-1), 4

    def _arrival(self, rows: np.ndarray) -> np.ndarray:
        """The arrival numbers of ``rows`` (records), as indexes."""
        number = np.zeros((len(rows), 4), dtype=np.uint8)
        number[:, 4 - self._width :] = rows[:, ID:]
        return number.view(">u4").ravel().astype(np.intp)

    def _sort(self) -> tuple[int, np.ndarray]:
        """The records, shrunk to their count and sorted in place: by id, then by arrival number (bytes)."""
        n, box = self.count, [self._bytes]
        self._bytes, self.count = np.empty(0, dtype=np.uint8), 0
        data = resized(box, n * self._record)
        data.view(f"S{self._record}").sort()
        return n, data

    def _packed(self, n: int, box: list[np.ndarray]) -> np.ndarray:
        """The sorted records' ids moved down over the arrival numbers, and the array shrunk to them."""
        data = box.pop()
        rows = data.reshape(n, self._record)
        for start in range(0, n, BLOCK):  # each block is read first: numpy buffers the overlap
            stop = min(n, start + BLOCK)
            data[start * ID : stop * ID] = rows[start:stop, :ID].reshape(-1)
        del rows
        box.append(data)
        del data
        return resized(box, n * ID).view(f"S{ID}")

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, arrival)``: the ids sorted (``S32``, equal ones in arrival order) and the arrival number of
        each (the permutation for columns kept in arrival order). Empties this object."""
        n, data = self._sort()
        arrival = self._arrival(data.reshape(n, self._record)).astype(np.uint32)
        box = [data]
        del data
        return self._packed(n, box), arrival

    def sorted_with(self, columns: list[ArrivingColumn]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(ids, columns)``: the ids sorted as by :meth:`sorted`, and each column (in arrival order) put in
        their order, read a block of arrival numbers at a time from the sorted records themselves: no
        permutation array beside them. Empties this object and the columns."""
        n, data = self._sort()
        rows = data.reshape(n, self._record)
        out = []
        for arriving in columns:  # one column at a time: it and its sorted copy
            column = arriving.taken()
            into = np.empty(n, dtype=column.dtype)
            for start in range(0, n, BLOCK):
                np.take(column, self._arrival(rows[start : start + BLOCK]), out=into[start : start + BLOCK])
            del column
            out.append(into)
        del rows
        box = [data]
        del data
        return self._packed(n, box), out


def narrowest(top: int) -> type:
    """The smallest unsigned type holding ``top``."""
    return np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32 if top < 1 << 32 else np.uint64


class ArrivingColumn:
    """One of the other columns (pack, offset, ...) in arrival order: one array grown in place, in the narrowest
    unsigned type its values need so far (widened, once in a while, when a larger value arrives)."""

    def __init__(self) -> None:
        self._data = np.empty(0, dtype=np.uint8)
        self.count = 0
        self._top = 0  # the largest value so far

    def append(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self._top = max(self._top, int(values.max()))
        kind = np.dtype(narrowest(self._top))
        if kind.itemsize > self._data.dtype.itemsize:
            self._data = self._data.astype(kind)  # rare: at most three times a column
        need = self.count + len(values)
        if need > len(self._data):
            size, box, self._data = len(self._data), [self._data], None
            self._data = resized(box, grown(size, need))
        self._data[self.count : need] = values
        self.count = need

    def taken(self) -> np.ndarray:
        """The values (in arrival order), the column emptied."""
        box, count = [self._data], self.count
        self._data, self.count, self._top = np.empty(0, dtype=np.uint8), 0, 0
        return resized(box, count)


def gathered(column: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``column[order]`` a block at a time: numpy turns an index array into 8-byte integers first, which for the
    whole ``uint32`` order at once would be a temporary twice its size."""
    out = np.empty(len(order), dtype=column.dtype)
    for start in range(0, len(order), BLOCK):
        np.take(column, order[start : start + BLOCK], out=out[start : start + BLOCK])
    return out


def compact(box: list[np.ndarray], keep: np.ndarray) -> np.ndarray:
    """``ids[keep]`` (the ids handed over in ``box``) written over the ids themselves, a block at a time, and
    the array shrunk: no second column."""
    ids = box.pop()
    write = 0
    for start in range(0, len(ids), BLOCK):
        kept = ids[start : start + BLOCK][keep[start : start + BLOCK]]  # a copy, written at or before its place
        ids[write : write + len(kept)] = kept
        write += len(kept)
    box.append(ids)
    del ids
    return resized(box, write)
