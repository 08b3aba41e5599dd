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
