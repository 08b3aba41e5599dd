"""``verify`` (keyless structure + hashes + parity, optionally full authenticated decryption) and ``info``."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path

from dbs_admin.sealed.errors import AuthenticationError, KeySlotError, SealedError, UnrecoverableError, UsageError
from dbs_admin.sealed.keys import Identity, describe_key_slots
from dbs_admin.sealed.layout import rs_overhead
from dbs_admin.sealed.metadata import file_size_of
from dbs_admin.sealed.reports import VerifyReport
from dbs_admin.sealed.structure import load_structure


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def verify(path: str | os.PathLike[str], *, passphrase: str | bytes | None = None,
           identity: Identity | None = None,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check a sealed file; never modifies it.

    Without a key: every metadata region is located and healed, and the data
    and parity hashes of every block of both copies are checked; blocks that
    fail in both copies are repaired in memory to learn if they can be. With a
    passphrase or identity: additionally the whole stream and the manifest are
    decrypted and authenticated (``decrypted=True``).

    ``progress(blocks checked, blocks)`` is called after each batch of blocks (a long check of a large file
    can show how far it is).

    Raises NotSealedError / UnsupportedVersionError for foreign files and key
    errors (NoKeyError, WrongPassphraseError, ...) for a wrong key; damage
    and failed authentication are reported (``ok=False``), not raised.
    """
    path = Path(path)
    with _open(path) as f:
        size = file_size_of(f)
        try:
            structure = load_structure(f, size)
        except UnrecoverableError as exc:
            return VerifyReport(str(path), ok=False, intact=False, decrypted=False, block_count=0,
                                unrecoverable_regions=list(exc.regions), damaged_regions=list(exc.regions),
                                healing_margin=0.0, error=str(exc))
        from dbs_admin.sealed.blocks import BlockReader  # numpy: only once blocks are checked, not for ``info``

        summary = BlockReader(f, size, structure.table).check_all(progress)
    regions = {name: st.as_dict() for name, st in structure.regions.items()}
    locator_ok = structure.locator_ok
    regions["locator"] = {"copies_found": int(structure.locator is not None),
                          "copies_intact": int(locator_ok and not structure.locator_repaired),
                          "repaired": structure.locator_repaired, "ok": locator_ok}
    damaged_regions = structure.damaged_regions
    unrecoverable_regions = [name for name, st in structure.regions.items() if not st.ok]
    copies = [summary.min_copies_intact] + [st.copies_intact for st in structure.regions.values()]
    report = VerifyReport(
        str(path),
        ok=not summary.unrecoverable and not unrecoverable_regions,
        intact=not summary.damaged and not summary.unrecoverable and not damaged_regions,
        decrypted=False,
        block_count=summary.block_count,
        healed_blocks=summary.damaged,
        repaired_blocks=summary.repaired,
        unrecoverable_blocks=summary.unrecoverable,
        damaged_regions=damaged_regions,
        unrecoverable_regions=unrecoverable_regions,
        healing_margin=max(0, min(min(copies), 2)) / 2,
        parity_ratio=rs_overhead(),
        regions=regions,
    )
    if summary.unrecoverable:
        report.error = (f"{len(summary.unrecoverable)} block(s) are damaged beyond repair in both copies: "
                        f"{summary.unrecoverable[:20]}")
    elif unrecoverable_regions:
        report.error = f"metadata lost in every copy: {', '.join(unrecoverable_regions)}"
    if passphrase is None and identity is None:
        return report
    from dbs_admin.sealed.reader import open_sealed

    try:
        with open_sealed(path, passphrase=passphrase, identity=identity) as reader:
            for _ in reader:
                pass
            report.manifest = reader.manifest
        report.decrypted = True
    except (AuthenticationError, UnrecoverableError) as exc:
        report.ok = False
        report.error = str(exc)
        if isinstance(exc, UnrecoverableError):
            report.unrecoverable_blocks = sorted(set(report.unrecoverable_blocks) | set(exc.blocks))
    except (KeySlotError, UsageError):
        raise
    except SealedError as exc:
        report.ok = False
        report.error = str(exc)
    return report


def info(path: str | os.PathLike[str]) -> dict:
    """Header, key slots, sizes and redundancy of a sealed file, without the key and without reading data."""
    path = Path(path)
    with _open(path) as f:
        size = file_size_of(f)
        st = load_structure(f, size)
    header, table = st.header, st.table
    return {
        "path": str(path),
        "size": size,
        "format_version": header.version,
        "file_id": header.file_id.hex(),
        "created": datetime.datetime.fromtimestamp(header.created, datetime.UTC).isoformat(),
        "block_size": header.block_size,
        "block_count": table.block_count,
        "data_length": table.data_length,
        "aead_chunk_size": header.chunk_size,
        "copies": 2,
        "copy_offsets": list(table.copy_offsets),
        "reed_solomon": {"n": header.rs_n, "nsym": header.rs_nsym, "parity_overhead": rs_overhead()},
        "key_slots": describe_key_slots(header.slots),
        "manifest_bytes": len(st.manifest_payload) if st.manifest_payload is not None else None,
        "regions": {name: s.as_dict() for name, s in st.regions.items()},
        "located_by_scan": st.scanned,
    }
