"""The corruption matrix: each case on a fresh copy; exact data back, or refusal naming the blocks."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from dbs_admin.sealed import NotSealedError, UnrecoverableError, heal, open_sealed, verify
from dbs_admin.sealed.layout import LOCATOR_RECORD_SIZE, PREFIX_SIZE, TABLE_ENTRY_SIZE, TABLE_FIXED

from .conftest import PASSPHRASE, random_bytes
from .damage import assert_exact, assert_refused_naming, flip, layout_of


def _mutate(path, fn):
    buf = bytearray(path.read_bytes())
    buf = fn(buf)
    path.write_bytes(bytes(buf))


def test_one_random_byte_flipped_per_10_kib(fresh_copy):
    path, data = fresh_copy
    rng = random.Random(10)

    def damage(buf):
        for start in range(0, len(buf), 10240):
            flip(buf, rng.randrange(start, min(start + 10240, len(buf))), rng)
        return buf

    _mutate(path, damage)
    healed = assert_exact(path, data)
    assert healed  # every block had flips in both copies: RS did the work
    report = verify(path)
    assert report.ok and not report.intact and report.healing_margin == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zero_a_64_kib_region(fresh_copy, seed):
    path, data = fresh_copy
    rng = random.Random(seed)

    def damage(buf):
        start = rng.randrange(0, len(buf) - 65536)
        buf[start : start + 65536] = bytes(65536)
        return buf

    _mutate(path, damage)
    assert_exact(path, data)


def test_same_block_zeroed_partly_in_both_copies(fresh_copy):
    """Bursts of up to 4 KiB in the same logical block of both copies: RS with erasures."""
    path, data = fresh_copy
    locator, record, _ = layout_of(path)
    rng = random.Random(4)

    buf = bytearray(path.read_bytes())
    for base in locator.copies:
        length = rng.randrange(1024, 4097)
        start = base + 5 * record + rng.randrange(0, 65536 - length)
        buf[start : start + length] = bytes(length)
    path.write_bytes(bytes(buf))
    healed = assert_exact(path, data)
    assert healed == [5]
    report = verify(path)
    assert report.repaired_blocks == [5] and report.healing_margin == 0.0


def test_large_zeroed_runs_in_both_copies_of_a_block(fresh_copy):
    """16 KiB zeroed in each copy of block 7 (56 errors per codeword in each): the 0x00 rule heals it."""
    path, data = fresh_copy
    locator, record, _ = layout_of(path)
    buf = bytearray(path.read_bytes())
    for base, start in zip(locator.copies, (2_000, 40_000)):
        at = base + 7 * record + start
        buf[at : at + 16384] = bytes(16384)
    path.write_bytes(bytes(buf))
    assert assert_exact(path, data) == [7]


@pytest.mark.parametrize("fraction", [0.01, 0.10, 0.49])
def test_truncate_the_tail(fresh_copy, fraction):
    path, data = fresh_copy
    _mutate(path, lambda buf: buf[: int(len(buf) * (1 - fraction))])
    assert_exact(path, data)
    report = verify(path)
    assert "locator" in report.damaged_regions and report.healing_margin == 0.5


def test_overwrite_the_first_512_bytes(fresh_copy):
    path, data = fresh_copy
    rng = random.Random(5)

    def damage(buf):
        for i in range(512):
            flip(buf, i, rng)
        return buf

    _mutate(path, damage)
    assert_exact(path, data)
    assert "header" in verify(path).damaged_regions


def test_overwrite_the_last_512_bytes(fresh_copy):
    path, data = fresh_copy
    rng = random.Random(6)

    def damage(buf):
        for i in range(len(buf) - 512, len(buf)):
            flip(buf, i, rng)
        return buf

    _mutate(path, damage)
    assert_exact(path, data)
    assert "locator" in verify(path).damaged_regions


def test_swap_two_blocks(fresh_copy):
    path, data = fresh_copy
    locator, record, _ = layout_of(path)
    a = locator.copies[0]

    def damage(buf):
        x, y = a + 2 * record, a + 9 * record
        buf[x : x + record], buf[y : y + record] = buf[y : y + record], buf[x : x + record]
        return buf

    _mutate(path, damage)
    assert sorted(assert_exact(path, data)) == [2, 9]


def test_bit_flipped_in_every_copy_of_the_header(fresh_copy):
    path, data = fresh_copy
    locator, _, _ = layout_of(path)
    rng = random.Random(7)

    def damage(buf):
        for offset in locator.headers:
            flip(buf, offset + 20, rng)  # in the prefix (file id)
            flip(buf, offset + PREFIX_SIZE + 30, rng)  # in the payload
        return buf

    _mutate(path, damage)
    assert_exact(path, data)
    assert verify(path).regions["header"]["copies_intact"] == 0


def test_damaged_hashes_in_both_tables_next_to_damaged_data(fresh_copy):
    """Block 3's table entry is corrupted in both table copies and block 3 is damaged in copy A."""
    path, data = fresh_copy
    locator, record, _ = layout_of(path)
    rng = random.Random(8)
    entry = PREFIX_SIZE + TABLE_FIXED.size + 3 * TABLE_ENTRY_SIZE  # prefix, fixed part, entry 3

    def damage(buf):
        for offset in locator.tables:
            for i in range(6):
                flip(buf, offset + entry + i, rng)
        flip(buf, locator.copies[0] + 3 * record + 100, rng)
        return buf

    _mutate(path, damage)
    assert_exact(path, data)


def test_block_lost_in_both_copies_is_refused_by_name(fresh_copy):
    path, data = fresh_copy
    locator, record, _ = layout_of(path)
    rng = random.Random(9)

    def damage(buf):
        for base in locator.copies:
            buf[base + 4 * record : base + 5 * record] = rng.randbytes(record)  # garbage
            buf[base + 11 * record : base + 12 * record] = bytes(record)  # zeroed (a valid codeword!)
        return buf

    _mutate(path, damage)
    assert_refused_naming(path, data, {4, 11})
    out = path.parent / "out.bin"
    with pytest.raises(UnrecoverableError), open_sealed(path, passphrase=PASSPHRASE) as reader:
        reader.read_all_to(out)
    assert not out.exists()


def test_heal_restores_a_pristine_file(sealed_sample, fresh_copy):
    src, _ = sealed_sample
    path, data = fresh_copy
    rng = random.Random(11)

    def damage(buf):
        for start in range(0, len(buf), 20480):
            flip(buf, rng.randrange(start, min(start + 20480, len(buf))), rng)
        return buf[:-1000]

    _mutate(path, damage)
    report = heal(path, path.parent / "healed.dbs")
    assert report.was_damaged
    assert (path.parent / "healed.dbs").read_bytes() == src.read_bytes()


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.dbs"
    path.write_bytes(b"")
    with pytest.raises(NotSealedError):
        open_sealed(path, passphrase=PASSPHRASE)
    with pytest.raises(NotSealedError):
        verify(path)


def test_random_file_is_not_sealed(tmp_path):
    path = tmp_path / "random.dbs"
    path.write_bytes(random_bytes(300_000, seed=12))
    with pytest.raises(NotSealedError):
        open_sealed(path, passphrase=PASSPHRASE)
    with pytest.raises(NotSealedError):
        verify(path)


def test_cli_exit_codes_follow_the_damage(fresh_copy, tmp_path):
    path, data = fresh_copy
    locator, record, _ = layout_of(path)
    cmd = [sys.executable, "-m", "dbs_admin.sealed", "verify", str(path)]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    buf = bytearray(path.read_bytes())
    buf[locator.copies[1] + 7] ^= 0x40
    path.write_bytes(bytes(buf))
    assert subprocess.run(cmd, capture_output=True).returncode == 1


@pytest.mark.parametrize("edit", ["cut 100 KB from the start", "cut 1 byte from the start",
                                  "prepend 5000 junk bytes", "cut 300 bytes between the copies"])
def test_bytes_lost_or_added_before_a_copy(fresh_copy, edit):
    """Offsets shift: the reader re-finds each data copy from where its table copy really is."""
    path, data = fresh_copy
    locator, _, _ = layout_of(path)
    raw = path.read_bytes()
    middle = locator.copies[1] - 1000  # inside manifest copy 0, just before copy B
    edited = {
        "cut 100 KB from the start": raw[100_000:],
        "cut 1 byte from the start": raw[1:],
        "prepend 5000 junk bytes": random_bytes(5000, seed=13) + raw,
        "cut 300 bytes between the copies": raw[:middle] + raw[middle + 300 :],
    }[edit]
    path.write_bytes(edited)
    assert_exact(path, data)
    assert not verify(path).intact


@pytest.mark.parametrize("from_end", [20, LOCATOR_RECORD_SIZE - 60, LOCATOR_RECORD_SIZE - 5])
def test_a_damaged_locator_is_reported_and_healed_not_silently_corrected(fresh_copy, tmp_path, from_end):
    """The locator (the file's last record) repaired by its own Reed-Solomon is still damage: verify says so and
    heal writes it back whole (it used to say intact, so nothing ever rewrote it)."""
    path, data = fresh_copy
    original = path.read_bytes()
    _mutate(path, lambda buf: (buf.__setitem__(len(buf) - from_end, buf[len(buf) - from_end] ^ 0xFF), buf)[1])
    report = verify(path)
    assert report.ok and not report.intact and report.damaged_regions == ["locator"]
    assert report.regions["locator"]["repaired"] is True
    healed = tmp_path / "healed.dbs"
    heal(path, healed)
    assert healed.read_bytes() == original and verify(healed).intact
    assert_exact(path, data)
