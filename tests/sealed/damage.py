"""Helpers that damage sealed files the way disks and networks do: XOR flips, zeroed runs, cuts.

Corruption is always by XOR with a non-zero value (never by writing a fixed
byte, which is a no-op one time in 256), except where a test means "zeroed".
"""

from __future__ import annotations

import random
from pathlib import Path

from dbs_admin.sealed import SealedError, UnrecoverableError, open_sealed, verify
from dbs_admin.sealed.layout import Locator
from dbs_admin.sealed.structure import load_structure

from .conftest import PASSPHRASE


def flip(buf: bytearray, offset: int, rng: random.Random) -> None:
    buf[offset] ^= rng.randrange(1, 256)


def layout_of(path: Path) -> tuple[Locator, int, int]:
    """(locator, block record size, block count) of an intact file."""
    with open(path, "rb") as f:
        size = path.stat().st_size
        st = load_structure(f, size)
    record = st.table.block_size + 32 * -(-st.table.block_size // 223)
    return st.locator, record, st.table.block_count


def outcome(path: Path, original: bytes) -> tuple[str, object]:
    """Read the file back: ("exact", healed blocks) or ("refused", the exception).

    Asserts the one invariant that matters: the data is exactly the original,
    or the read fails with a SealedError; never different bytes.
    """
    try:
        with open_sealed(path, passphrase=PASSPHRASE) as reader:
            data = reader.read()
            healed = reader.healed_blocks
    except SealedError as exc:
        return "refused", exc
    assert data == original, "returned bytes that differ from what was sealed"
    return "exact", healed


def assert_exact(path: Path, original: bytes) -> list[int]:
    kind, detail = outcome(path, original)
    assert kind == "exact", f"expected the data back, got {detail!r}"
    report = verify(path)
    assert report.ok, report.error
    return detail


def assert_refused_naming(path: Path, original: bytes, blocks: set[int]) -> None:
    kind, exc = outcome(path, original)
    assert kind == "refused"
    assert isinstance(exc, UnrecoverableError), exc
    assert set(exc.blocks) == blocks
    report = verify(path)
    assert not report.ok and set(report.unrecoverable_blocks) == blocks


__all__ = ["flip", "layout_of", "outcome", "assert_exact", "assert_refused_naming"]
