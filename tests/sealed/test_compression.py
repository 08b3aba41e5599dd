"""The payload's zstd stream: incompressible pieces skip the search, and the result is still ONE frame."""

from __future__ import annotations

import json
import random

import pytest
import zstandard

from dbs_admin.sealed import compression, open_sealed

from .conftest import PASSPHRASE, random_bytes, seal_bytes


def text_piece(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    rows = []
    while sum(map(len, rows)) < n:
        rows.append(json.dumps({"id": len(rows), "title": f"post {rng.randrange(10**6)}",
                                "body": " ".join(rng.choices(["alpha", "backup", "django", "sealed"], k=40))}))
    return "\n".join(rows).encode()[:n]


def mixed_pieces() -> list[bytes]:
    """A dump-like text part, media-like random pieces with small frame headers between them, text again."""
    pieces = [text_piece(1 << 20, seed=n) for n in range(3)]
    for n in range(40):
        pieces += [b"F\x00\x00\x00\x10" + b"x" * 16, random_bytes(90_000, seed=100 + n)]
    pieces += [text_piece(1 << 20, seed=9)]
    return pieces


def one_frame(packed: bytes) -> bytes:
    """What a reader that takes exactly one frame (docs/FORMAT.md section 6) gets back."""
    return zstandard.ZstdDecompressor().stream_reader(packed, read_across_frames=False).read()


needs_switch = pytest.mark.skipif(not compression.levels_switchable(2),
                                  reason="python-zstandard without its cffi backend: one level for all")


@needs_switch
def test_incompressible_pieces_go_at_the_fast_level_and_the_rest_at_the_callers():
    pieces = mixed_pieces()
    stream = compression.LevelledStream(3, 2)
    packed = b"".join([stream.compress(p) for p in pieces] + [stream.finish()])
    media = sum(len(p) for p in pieces if len(p) == 90_000)
    text = sum(len(p) for p in pieces if len(p) == 1 << 20)
    assert stream.levels[compression.FAST_LEVEL] >= media  # every random piece (and the headers after them)
    assert stream.levels[3] >= text  # every text piece at the level asked for
    assert one_frame(packed) == b"".join(pieces)


@needs_switch
def test_levelled_stream_is_one_frame_with_no_more_bytes_after_it():
    pieces = mixed_pieces()
    counter = [0]
    packed = b"".join(compression.compressed(pieces, 3, counter, threads=2))
    assert counter[0] == len(packed)
    d = zstandard.ZstdDecompressor().decompressobj()
    assert d.decompress(packed) == b"".join(pieces)
    assert d.eof and d.unused_data == b""  # exactly one frame: nothing follows it


@needs_switch
def test_text_keeps_its_ratio_and_media_costs_little_size():
    """The trial must not send compressible data down the fast path: the stream is within a few per cent of
    one compressed at level 3 throughout."""
    pieces = mixed_pieces()
    levelled = b"".join(compression.compressed(pieces, 3, [0], threads=2))
    fixed = zstandard.ZstdCompressor(level=3).compress(b"".join(pieces))
    assert len(levelled) <= 1.05 * len(fixed)


def test_without_worker_threads_one_level_and_one_frame():
    pieces = mixed_pieces()
    packed = b"".join(compression.compressed(pieces, 3, [0], threads=0))
    assert one_frame(packed) == b"".join(pieces)
    with pytest.raises(ValueError):
        compression.LevelledStream(3, 0)


def test_a_sealed_file_of_mixed_pieces_reads_back(tmp_path):
    pieces = mixed_pieces()
    path = seal_bytes(iter(pieces), tmp_path / "mixed.dbs")
    with open_sealed(path, passphrase=PASSPHRASE) as reader:
        assert reader.read() == b"".join(pieces)
