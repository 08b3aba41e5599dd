"""The compact chunk index answers exactly as the dict it replaces, across blobs, duplicates and additions."""

from __future__ import annotations

import random

import pytest

from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.repo.chunkindex import ChunkIndex
from dbs_admin.sealed.repo.packs import Entry
from dbs_admin.sealed.repo.records import encode_index


def entries(rng: random.Random, n: int, packs: list[str]) -> dict[bytes, Entry]:
    out = {}
    for _ in range(n):
        cid = rng.randbytes(31) + (b"\0" if rng.random() < 0.2 else rng.randbytes(1))  # trailing NULs too
        out[cid] = Entry(rng.choice(packs), rng.randrange(1 << 23), rng.randrange(1, 1 << 18), rng.randrange(5000),
                         rng.randrange(2), rng.randrange(1 << 40))
    return out


def test_the_index_answers_as_a_dict_would():
    rng = random.Random(7)
    reference: dict[bytes, Entry] = {}
    index = ChunkIndex()
    for b in range(5):
        batch = entries(rng, 3000, [f"packs/s{b}.{i}" for i in range(4)])
        doc = encode_index(batch)
        index.add_blob(doc["packs"], doc["entries"])
        for cid, e in batch.items():
            reference.setdefault(cid, e)
    dup = next(iter(reference))  # the same chunk listed again elsewhere: the first listing is kept
    doc = encode_index({dup: Entry("packs/other", 1, 2, 3, 0, 4)})
    index.add_blob(doc["packs"], doc["entries"])
    added = entries(rng, 50, ["packs/new"])
    index.update(added)
    reference.update({k: v for k, v in added.items() if k not in reference})
    for cid, entry in reference.items():
        assert cid in index and index.get(cid) == entry and index[cid] == entry
    for _ in range(2000):
        absent = rng.randbytes(32)
        assert absent not in index and index.get(absent) is None
    probe = list(reference)[::7] + [rng.randbytes(32) for _ in range(300)]
    rng.shuffle(probe)
    assert list(index.locate_many(probe, batch=100)) == [(cid, reference.get(cid)) for cid in probe]
    assert list(ChunkIndex().locate_many(probe[:3])) == [(cid, None) for cid in probe[:3]]
    assert len(index) == len(reference)
    assert dict(index.items()) == reference
    with pytest.raises(KeyError):
        index[rng.randbytes(32)]


def test_later_builds_merge_into_the_built_columns_and_keep_the_first_listing():
    """A backup's chunks after the index was built (merged, not rebuilt), duplicates of built and of new ids
    (the first listing wins: built, then blobs in order, then updates), and an iteration that holds the built
    column while a build happens (the column is copied, not reallocated under it)."""
    rng = random.Random(11)
    reference: dict[bytes, Entry] = {}
    index = ChunkIndex()
    first = entries(rng, 4000, ["packs/a", "packs/b"])
    doc = encode_index(first)
    index.add_blob(doc["packs"], doc["entries"])
    reference.update(first)
    assert len(index) == len(reference)
    walking = iter(index)
    seen = [next(walking) for _ in range(10)]
    again = dict(list(first.items())[:500])
    later = {**{cid: Entry("packs/c", 9, 9, 9, 1, 9) for cid in again}, **entries(rng, 3000, ["packs/c"])}
    doc = encode_index(later)
    index.add_blob(doc["packs"], doc["entries"])
    for cid, e in later.items():
        reference.setdefault(cid, e)
    updated = {**{cid: Entry("packs/d", 1, 1, 1, 0, 1) for cid in list(later)[-50:]}, **entries(rng, 40, ["packs/d"])}
    index.update(updated)
    for cid, e in updated.items():
        reference.setdefault(cid, e)
    assert len(index) == len(reference)
    assert dict(index.items()) == reference
    assert seen + list(walking) == sorted(first), "the iteration goes on over the column it started on"
    assert [cid for cid in index] == sorted(reference)


def test_the_build_never_holds_a_second_copy_of_the_ids():
    """Building the index allocates, beyond what the added entries already hold, less than half the ids'
    size (the arrival order and blocks): the ids are sorted in place, not copied (numpy's buffers are traced)."""
    import tracemalloc

    rng = random.Random(5)
    docs = [encode_index(entries(rng, 10_000, [f"packs/{b}"])) for b in range(4)]
    n = sum(len(d["entries"]) for d in docs) // 61
    tracemalloc.start()
    try:
        index = ChunkIndex()
        for doc in docs:
            index.add_blob(doc["packs"], doc["entries"])
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        assert len(index) == n
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - held < 32 * n / 2, f"the build allocated {peak - held} bytes beside {32 * n} bytes of ids"


def test_arrival_numbers_widen_past_what_their_bytes_count():
    """Past 2^24 ids the 3-byte arrival numbers become 4 bytes (here from 1 byte, past 256): the order holds."""
    import numpy as np

    from dbs_admin.sealed.repo.idsort import ArrivingColumn, ArrivingIds

    rng = random.Random(9)
    raw = [rng.randbytes(32) for _ in range(700)]
    raw[600] = raw[3]  # a duplicate: the first arrival first
    arriving, column = ArrivingIds(), ArrivingColumn()
    arriving._width = 1
    for start in range(0, 700, 100):
        arriving.append(np.array(raw[start : start + 100], dtype="S32"))
        column.append(np.arange(start, start + 100, dtype=np.uint32))
    assert arriving._width == 4
    ids, (positions,) = arriving.sorted_with([column])
    expected = sorted(range(700), key=lambda i: (raw[i], i))
    assert positions.tolist() == expected
    assert [bytes(i).ljust(32, b"\0") for i in ids] == [raw[i] for i in expected]


def test_truncated_or_inconsistent_blobs_are_refused():
    doc = encode_index(entries(random.Random(1), 10, ["packs/a"]))
    with pytest.raises(SealedError, match="truncated"):
        ChunkIndex().add_blob(doc["packs"], doc["entries"][:-1])
    with pytest.raises(SealedError, match="does not list"):
        ChunkIndex().add_blob([], doc["entries"])


def test_feeding_records_in_bulk_cuts_exactly_where_one_by_one_does():
    from dbs_admin.sealed.repo.chunker import RecordChunker

    rng = random.Random(3)
    records = [rng.randbytes(rng.choice([5, 80, 700, 3000, 70_000])) for _ in range(3000)]
    one, bulk = RecordChunker(), RecordChunker()
    expected = [c for r in records for c in one.feed(r)] + one.finish()
    got = bulk.feed_many(records[:1000]) + bulk.feed_many(records[1000:]) + bulk.finish()
    assert got == expected and b"".join(got) == b"".join(records)
