"""The repository's fast paths give exactly what the plain ones give: the same cuts, the same index answers,
the same payload read back (they exist for speed only; the chunks and the bytes must not change)."""

from __future__ import annotations

import random
import struct

import msgpack
import pytest

from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.repo.chunker import RecordChunker
from dbs_admin.sealed.repo.chunkindex import ChunkIndex
from dbs_admin.sealed.repo.export import PAYLOAD_MAGIC, PREFIX, REBATCH_ROWS, frames, rebatched
from dbs_admin.sealed.repo.packs import Entry
from dbs_admin.sealed.repo.records import encode_index


def test_feeding_records_in_two_parts_cuts_where_whole_records_cut():
    rng = random.Random(3)
    records = [(rng.randbytes(rng.choice([6, 9])), rng.randbytes(rng.choice([10, 300, 2000, 70_000])))
               for _ in range(3000)]
    whole, parts = RecordChunker(), RecordChunker()
    expected = [c for head, tail in records for c in whole.feed(head + tail)] + whole.finish()
    got = parts.feed_pairs((head, memoryview(tail)) for head, tail in records) + parts.finish()
    assert got == expected and len(expected) > 100


def test_a_batch_membership_answers_as_one_by_one_lookups():
    rng = random.Random(5)
    stored = {rng.randbytes(31) + (b"\0" if i % 5 == 0 else rng.randbytes(1)): Entry("packs/a", i, 1, i, 0, 1)
              for i in range(4000)}
    index = ChunkIndex()
    doc = encode_index(stored)
    index.add_blob(doc["packs"], doc["entries"])
    added = {rng.randbytes(32): Entry("packs/b", 0, 1, 0, 0, 1) for _ in range(20)}
    index.update(added)
    probe = list(stored)[::3] + list(added) + [rng.randbytes(32) for _ in range(500)] + [bytes(32)]
    rng.shuffle(probe)
    assert index.contains_many(probe) == [cid in index for cid in probe]
    assert sum(index.contains_many(probe)) == len(list(stored)[::3]) + len(added)
    assert ChunkIndex().contains_many(probe[:4]) == [False] * 4 and index.contains_many([]) == []


def _frame(kind: bytes, body: bytes) -> bytes:
    return PREFIX.pack(kind, len(body)) + body


def _plain_rebatched(payload: bytes) -> bytes:
    """What rebatching must give, by the simplest means: every frame parsed, one-row ROWS runs merged."""
    out, rows = [], []

    def flush():
        if rows:
            out.append(_frame(b"R", msgpack.packb(rows)))
            rows.clear()

    for kind, frame in frames([payload]):
        if kind == b"R" and frame[PREFIX.size] == 0x91:
            rows.append(msgpack.unpackb(frame[PREFIX.size :])[0])
            if len(rows) >= REBATCH_ROWS:
                flush()
            continue
        flush()
        out.append(frame)
    flush()
    return b"".join(out)


@pytest.mark.parametrize("seed", range(4))
def test_rebatching_gives_the_payload_whatever_the_chunks_cut(seed):
    rng = random.Random(seed)
    parts = [PAYLOAD_MAGIC, _frame(b"H", b'{"format":1}')]
    for _ in range(30):
        parts.append(_frame(b"M", b'{"model":"x"}'))
        for _ in range(rng.randrange(0, 4500)):
            parts.append(_frame(b"R", msgpack.packb([[rng.randrange(1 << 40), rng.randbytes(rng.randrange(50))]])))
        if rng.random() < 0.3:
            parts.append(_frame(b"R", msgpack.packb([[1], [2]])))  # a batch of two is passed on as it is
        if rng.random() < 0.3:
            data = rng.randbytes(rng.randrange(1, 300_000))
            parts.append(_frame(b"F", b"{}") + _frame(b"D", data) + _frame(b"Z", b"{}"))
    parts.append(_frame(b"E", b""))
    payload = b"".join(parts)
    cuts = sorted(rng.sample(range(1, len(payload)), 400)) + [len(payload)]
    chunks, start = [], 0
    for cut in cuts:
        chunks.append(payload[start:cut])
        start = cut
    assert b"".join(rebatched(chunks)) == _plain_rebatched(payload)
    assert b"".join(rebatched([payload])) == _plain_rebatched(payload)
    with pytest.raises(SealedError, match="ended inside a record"):
        b"".join(rebatched(chunks[:-1] + [chunks[-1][:-1]] if len(chunks[-1]) > 1 else chunks[:-1]))


def test_rebatched_pieces_are_whole_prefixes_and_bodies():
    payload = PAYLOAD_MAGIC + b"".join(_frame(b"R", msgpack.packb([[i]])) for i in range(5)) + _frame(b"E", b"")
    pieces = [bytes(p) for p in rebatched([payload[:20], payload[20:]])]
    assert pieces[0] == PAYLOAD_MAGIC
    assert struct.unpack(">cI", pieces[1]) == (b"R", len(pieces[2]))
    assert msgpack.unpackb(pieces[2]) == [[i] for i in range(5)]
    assert pieces[3:] == [b"E\0\0\0\0", b""]
