"""The in-memory chunk index: chunk id -> where it is, in sorted numpy columns instead of a dict of objects.

Why: a dict of ``bytes -> Entry`` costs about 400 bytes a chunk in Python
objects, so a repository of a million chunks would need 400 MB just to know
what it holds. Here the ids are one contiguous sorted ``S32`` array (32 bytes
a chunk) searched by bisection, and the other fields are parallel columns of
the narrowest unsigned type that holds them (pack number, offset, length,
position, flags, plaintext length: 21 bytes a chunk at most sizes), so a
million chunks take about 53 MB. Pack names are kept once, in a list.

It behaves as the mapping the repository used before (``in``, ``get``,
``[]``, ``len``, ``items``, ``update``): chunks added by the running backup
go into a small dict beside the columns until the index is next built.
Built from the index objects' entry blobs directly (``add_blob``), with no
per-chunk Python object and no second copy of the ids (``idsort``: sorted in
place; a million chunks peak under 100 MiB of RSS, ``bench/chunk_index.py``);
rebuildable from the packs like any index (``Repository.rebuild_index``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.repo.idsort import ArrivingColumn, ArrivingIds, compact, gathered, narrowest
from dbs_admin.sealed.repo.packs import Entry

ENTRY_DTYPE = np.dtype([("id", "S32"), ("pack", "<u4"), ("offset", "<u8"), ("length", "<u4"), ("seq", "<u4"),
                        ("flags", "u1"), ("raw", "<u8")])  # records.ENTRY, as numpy reads it (61 bytes, packed)
_FIELDS = ("pack", "offset", "length", "seq", "flags", "raw")


def _give_back_memory() -> None:
    """Return the freed heap to the system (glibc keeps the many small blocks of the merged parts otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused by the process all the same
        pass


class ChunkIndex:
    """Chunk id -> Entry; see the module docstring."""

    def __init__(self) -> None:
        self._packs: list[str] = []
        self._pack_number: dict[str, int] = {}
        self._arriving = ArrivingIds()  # the ids of blobs added since the last build (see ``idsort``)
        self._arriving_cols = {f: ArrivingColumn() for f in _FIELDS}  # their other columns
        self._ids = np.empty(0, dtype="S32")
        self._cols: dict[str, np.ndarray] = {f: np.empty(0, dtype=np.uint8) for f in _FIELDS}
        self._extra: dict[bytes, Entry] = {}

    # --- building

    def _number(self, pack: str) -> int:
        number = self._pack_number.get(pack)
        if number is None:
            number = self._pack_number[pack] = len(self._packs)
            self._packs.append(pack)
        return number

    def add_blob(self, packs: list[str], blob: bytes) -> None:
        """Add the entries of one index object (``records.ENTRY`` records naming ``packs`` by number)."""
        if len(blob) % ENTRY_DTYPE.itemsize:
            raise SealedError("an index object's entries are truncated")
        rows = np.frombuffer(blob, dtype=ENTRY_DTYPE)
        if len(rows) and int(rows["pack"].max()) >= len(packs):
            raise SealedError("an index object names a pack it does not list")
        remap = np.array([self._number(p) for p in packs], dtype=np.uint32)
        self._arriving.append(rows["id"])
        if len(rows):
            self._arriving_cols["pack"].append(remap[rows["pack"]])
        for field in _FIELDS[1:]:
            self._arriving_cols[field].append(rows[field])

    def _build(self) -> None:
        """Merge what was added into the sorted columns (the first entry of a duplicated id is kept).

        The added ids are sorted without a second copy of them (``idsort``); with nothing built yet (opening
        a repository) they become the column as they are; otherwise (a backup's new chunks) they are merged
        into it. The other columns follow the ids' order. ``bench/chunk_index.py`` measures the peak.
        """
        if not len(self._arriving) and not self._extra:
            return
        if self._extra:
            extra = list(self._extra.items())
            self._arriving.append(np.array([cid for cid, _ in extra], dtype="S32"))
            self._arriving_cols["pack"].append(np.array([self._number(e.pack) for _, e in extra], dtype=np.uint32))
            for f, a in zip(_FIELDS[1:], ("offset", "length", "seq", "flags", "raw_length")):
                self._arriving_cols[f].append(np.array([getattr(e, a) for _, e in extra], dtype=np.uint64))
            self._extra = {}
        built = len(self._ids)
        _give_back_memory()  # what the blobs' decoding left free, before the peak
        if built:
            ids, columns = self._merged()
        else:  # opening a repository: the ids sorted in place, the columns put in their order block by block
            ids, gathered = self._arriving.sorted_with([self._arriving_cols[f] for f in _FIELDS])
            columns = dict(zip(_FIELDS, gathered))
            del gathered
        if len(ids) > 1:
            keep = np.empty(len(ids), dtype=bool)
            keep[0] = True
            np.not_equal(ids[1:], ids[:-1], out=keep[1:])
            if not keep.all():
                box, ids = [ids], None
                ids = compact(box, keep)
                for field in _FIELDS:
                    columns[field] = columns[field][keep]
            del keep
        self._ids, self._cols = ids, columns
        _give_back_memory()

    def _merged(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The built columns with the added entries merged in (a backup's new chunks: a few beside many).

        New ids go after equal built ones (``side="right"``), so a built entry is the first and is kept."""
        built = len(self._ids)
        ids, order = self._arriving.sorted()
        order += np.uint32(built)  # positions in the columns, the built ones first
        at = np.searchsorted(self._ids, ids, side="right")
        ids = np.insert(self._ids, at, ids)
        order = np.insert(np.arange(built, dtype=np.uint32), at, order)
        self._ids = np.empty(0, dtype="S32")
        columns = {}
        for field in _FIELDS:  # one field at a time: two of its columns at most
            column = self._arriving_cols[field].taken()
            built_column, self._cols[field] = self._cols[field], None
            top = max(int(built_column.max(initial=0)), int(column.max(initial=0)))
            column = np.concatenate([built_column, column], dtype=narrowest(top), casting="unsafe")  # fits
            del built_column
            columns[field] = gathered(column, order)
            del column
        return ids, columns

    # --- the mapping

    def _position(self, cid: bytes) -> int:
        i = int(np.searchsorted(self._ids, cid))
        return i if i < len(self._ids) and self._ids[i] == cid.rstrip(b"\0") else -1

    def get(self, cid: bytes, default: Entry | None = None) -> Entry | None:
        entry = self._extra.get(cid)
        if entry is not None:
            return entry
        if len(self._arriving):
            self._build()
        i = self._position(cid)
        if i < 0:
            return default
        c = self._cols
        return Entry(self._packs[int(c["pack"][i])], int(c["offset"][i]), int(c["length"][i]), int(c["seq"][i]),
                     int(c["flags"][i]), int(c["raw"][i]))

    def locate_many(self, ids: Iterable[bytes], batch: int = 4096) -> Iterator[tuple[bytes, Entry | None]]:
        """``(id, entry or None)`` for each id in order, looked up a batch at a time (a restore's whole stream)."""
        self._build()
        pending: list[bytes] = []
        for cid in ids:
            pending.append(cid)
            if len(pending) >= batch:
                yield from self._locate_batch(pending)
                pending = []
        if pending:
            yield from self._locate_batch(pending)

    def _locate_batch(self, ids: list[bytes]) -> Iterator[tuple[bytes, Entry | None]]:
        wanted = np.array(ids, dtype="S32")
        found = np.searchsorted(self._ids, wanted) if len(self._ids) else np.zeros(len(ids), dtype=np.intp)
        found = np.minimum(found, max(0, len(self._ids) - 1))
        hit = (self._ids[found] == wanted) if len(self._ids) else np.zeros(len(ids), dtype=bool)
        c = self._cols
        columns = [c[f][found].tolist() for f in _FIELDS] if len(self._ids) else [[0] * len(ids)] * len(_FIELDS)
        packs = self._packs
        for i, (cid, ok) in enumerate(zip(ids, hit.tolist())):
            if ok:
                yield cid, Entry(packs[columns[0][i]], columns[1][i], columns[2][i], columns[3][i], columns[4][i],
                                 columns[5][i])
            else:
                yield cid, self._extra.get(cid)

    def contains_many(self, ids: list[bytes]) -> list[bool]:
        """``cid in self`` for each id, with one vectorised search (a backup asks for every chunk it cuts)."""
        if len(self._arriving):
            self._build()
        if len(self._ids) and ids:
            wanted = np.array(ids, dtype="S32")
            found = np.minimum(np.searchsorted(self._ids, wanted), len(self._ids) - 1)
            hits = (self._ids[found] == wanted).tolist()
        else:
            hits = [False] * len(ids)
        extra = self._extra
        if extra:
            hits = [hit or cid in extra for hit, cid in zip(hits, ids)]
        return hits

    def __getitem__(self, cid: bytes) -> Entry:
        entry = self.get(cid)
        if entry is None:
            raise KeyError(cid.hex())
        return entry

    def __contains__(self, cid: object) -> bool:
        if not isinstance(cid, bytes):
            return False
        if cid in self._extra:
            return True
        if len(self._arriving):
            self._build()
        return self._position(cid) >= 0

    def __len__(self) -> int:
        self._build()
        return len(self._ids)

    def __iter__(self) -> Iterator[bytes]:
        self._build()
        for cid in self._ids:
            yield bytes(cid).ljust(32, b"\0")

    def items(self) -> Iterator[tuple[bytes, Entry]]:
        self._build()
        c = self._cols
        packs = self._packs
        for i, cid in enumerate(self._ids):
            yield bytes(cid).ljust(32, b"\0"), Entry(packs[int(c["pack"][i])], int(c["offset"][i]),
                                                     int(c["length"][i]), int(c["seq"][i]), int(c["flags"][i]),
                                                     int(c["raw"][i]))

    def update(self, entries: dict[bytes, Entry] | Iterable[tuple[bytes, Entry]]) -> None:
        """Add entries (a backup's new chunks): kept aside until the next build, which merges them."""
        self._extra.update(entries)

    def nbytes(self) -> int:
        """Bytes held by the columns (what a million chunks cost; see bench/chunk_index.py)."""
        return self._ids.nbytes + sum(c.nbytes for c in self._cols.values())


__all__ = ["ChunkIndex", "ENTRY_DTYPE"]
