"""Finding and healing a file's metadata: header, block table, manifest.

Reader order (docs/FORMAT.md, "Reading"): the record at offset 0 and the
locator at the end give every region's offsets; only if some region is then
short of copies (start or end of the file damaged or cut) is the whole file
scanned for record magics. Each region is healed from all copies found, and
only records carrying the header's file id are trusted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import BinaryIO

from dbs_admin.sealed.errors import NotSealedError, UnrecoverableError
from dbs_admin.sealed.layout import (
    KIND_HEADER,
    KIND_LOCATOR,
    KIND_MANIFEST,
    KIND_NAMES,
    KIND_TABLE,
    LOCATOR_RECORD_SIZE,
    MAGIC,
    Header,
    Locator,
    Table,
    blake2b,
    copy_size,
    header_digest,
    record_size,
)
from dbs_admin.sealed.metadata import (
    Prefix,
    RecordResult,
    encode_record,
    read_exact_at,
    read_prefix,
    recover_record,
    scan,
)


@dataclass
class RegionState:
    """How healthy one metadata region is: copies found, intact, and whether it had to be repaired."""

    name: str
    copies_found: int
    copies_intact: int
    repaired: bool
    ok: bool

    def as_dict(self) -> dict:
        return {"copies_found": self.copies_found, "copies_intact": self.copies_intact,
                "repaired": self.repaired, "ok": self.ok}


@dataclass
class Structure:
    """Everything known about a file without its key."""

    size: int
    header: Header
    header_payload: bytes
    digest: bytes
    table: Table
    manifest_payload: bytes | None
    locator: Locator | None
    scanned: bool
    regions: dict[str, RegionState] = field(default_factory=dict)
    locator_repaired: bool = False  # read only after Reed-Solomon repair: intact data, damaged bytes

    @property
    def locator_ok(self) -> bool:
        return self.locator is not None and self.locator.total_size == self.size

    @property
    def damaged_regions(self) -> list[str]:
        """Metadata regions with a damaged or missing copy (all still recovered), locator included."""
        damaged = [name for name, st in self.regions.items() if st.copies_intact < 2 or st.repaired]
        return damaged + ([] if self.locator_ok and not self.locator_repaired else ["locator"])


def _locator(f: BinaryIO, size: int) -> tuple[Locator | None, bool]:
    """The locator at the end of the file, and whether its bytes needed repair (then heal rewrites them)."""
    offset = size - LOCATOR_RECORD_SIZE
    prefix = read_prefix(f, offset, size) if offset >= 0 else None
    if prefix is None or prefix.kind != KIND_LOCATOR:
        return None, False
    result = recover_record(f, size, [(offset, prefix)])
    if result.payload is None:
        return None, False
    try:
        locator = Locator.unpack(result.payload)
    except Exception:
        return None, False
    # The record is deterministic: any byte on disk that differs from it (its parity included, which the
    # payload's hash cannot see) is damage that heal must write back.
    on_disk, _ = read_exact_at(f, offset, LOCATOR_RECORD_SIZE, size)
    return locator, on_disk != encode_record(KIND_LOCATOR, 0, locator.file_id, result.payload)


def _add(found: dict[int, dict[int, Prefix]], offset: int, prefix: Prefix | None) -> None:
    if prefix is not None:
        found.setdefault(prefix.kind, {})[offset] = prefix


def load_structure(f: BinaryIO, size: int, *, scan_file: bool = True) -> Structure:
    """Locate, heal and parse the metadata of the sealed file open as ``f``.

    Raises NotSealedError when nothing in the file is a sealed-backup record,
    UnrecoverableError naming the regions that cannot be recovered.

    ``scan_file=False`` reads only the regions the locator names (a remote
    file read by ranges: a few hundred kilobytes of a file of gigabytes). A
    record is then healed from its second copy as usual, but a lost locator
    (a truncated file) or a kind with no copy where the locator says is
    refused rather than searched for byte by byte.
    """
    if size == 0:
        raise NotSealedError("the file is empty (0 bytes): it is not a sealed backup")
    found: dict[int, dict[int, Prefix]] = {}
    _add(found, 0, read_prefix(f, 0, size))
    locator, locator_repaired = _locator(f, size)
    if locator is not None:
        for _kind, offsets in ((KIND_HEADER, locator.headers), (KIND_TABLE, locator.tables),
                              (KIND_MANIFEST, locator.manifests)):
            for offset in offsets:
                _add(found, offset, read_prefix(f, offset, size))
    if not scan_file:
        if locator is None:
            raise UnrecoverableError(
                "the end of the file, where its locator is, is missing or damaged (truncated?); validate the "
                "whole file to heal it, or use an intact copy from another target", regions=("locator",))
        if any(not found.get(k) for k in (KIND_HEADER, KIND_TABLE, KIND_MANIFEST)):
            raise UnrecoverableError(
                "a metadata record is not where the locator says in either copy; validate the whole file to "
                "search for it", regions=("header", "block table", "manifest"))
    scanned = False
    if scan_file and (locator is None or any(len(found.get(k, {})) < 2
                                             for k in (KIND_HEADER, KIND_TABLE, KIND_MANIFEST))):
        for offset, prefix in scan(f, size):
            _add(found, offset, prefix)
        scanned = True
    if not found:
        head, _ = read_exact_at(f, 0, len(MAGIC), size)
        if head == MAGIC:
            raise UnrecoverableError(
                "the file starts like a sealed backup but no metadata record is readable",
                regions=("header", "block table", "manifest"),
            )
        raise NotSealedError("this is not a sealed backup (no dbs_admin records found in it)")

    regions: dict[str, RegionState] = {}

    def recover(kind: int, file_id: bytes | None) -> RecordResult:
        cands = [(off, p) for off, p in sorted(found.get(kind, {}).items())
                 if file_id is None or p.file_id == file_id]
        result = recover_record(f, size, cands)
        regions[KIND_NAMES[kind]] = RegionState(KIND_NAMES[kind], result.copies_found, result.copies_intact,
                                                result.repaired, result.payload is not None)
        return result

    header_result = recover(KIND_HEADER, locator.file_id if locator is not None else None)
    if header_result.payload is None and locator is not None:
        header_result = recover(KIND_HEADER, None)
    if header_result.payload is None:
        raise UnrecoverableError("the header is damaged beyond repair in every copy: the file cannot be read",
                                 regions=("header",))
    header = Header.unpack(header_result.payload)
    digest = header_digest(header_result.payload)
    table_result = recover(KIND_TABLE, header.file_id)
    table = None
    if table_result.payload is not None:
        try:
            table = Table.unpack(table_result.payload)
        except ValueError:
            table = None
    if table is None or table.header_digest != digest or table.block_size != header.block_size:
        regions["block table"].ok = False
        raise UnrecoverableError("the block table is damaged beyond repair in every copy",
                                 regions=("block table",))
    manifest_result = recover(KIND_MANIFEST, header.file_id)
    if locator is not None and locator.file_id != header.file_id:
        locator = None
    table = _realign(table, header_result.payload, table_result.payload, found.get(KIND_TABLE, {}))
    return Structure(size, header, header_result.payload, digest, table, manifest_result.payload, locator,
                     scanned, regions, locator_repaired=locator is not None and locator_repaired)


def _realign(
    table: Table, header_payload: bytes, table_payload: bytes, candidates: dict[int, Prefix]
) -> Table:
    """Shift the copy offsets if the table copies were found away from where the layout puts them.

    Each table copy directly follows its data copy (copy 1 after header copy
    1), so where a table copy actually is tells where its data copy actually
    is: this re-finds the data when bytes were cut from (or added to) the start
    of the file, or between the two copies.
    """
    digest = blake2b(table_payload, 32)
    span = copy_size(table.block_count, table.data_length, table.block_size)
    expected = (table.copy_offsets[0] + span, table.copy_offsets[1] + span + record_size(len(header_payload)))
    shifts: dict[int, int] = {}
    for offset, prefix in candidates.items():
        if prefix.digest == digest and prefix.copy in (0, 1):
            shifts.setdefault(prefix.copy, offset - expected[prefix.copy])
    if not shifts or all(v == 0 for v in shifts.values()):
        return table
    shift_a = shifts.get(0, shifts.get(1, 0))
    shift_b = shifts.get(1, shift_a)
    offsets = (table.copy_offsets[0] + shift_a, table.copy_offsets[1] + shift_b)
    return dataclasses.replace(table, copy_offsets=offsets)
