"""Memory and speed of the repository's compact chunk index (sealed.repo.chunkindex) for a million chunks.

    python bench/chunk_index.py                 # 1,000,000 chunks in 100 index objects
    python bench/chunk_index.py --chunks 200000 --objects 20

The entries are synthetic (random ids, packs of ~130 chunks) and reach the
index as they do in a repository: as the ``entries`` blobs of index objects,
one per backup. Prints the process's RSS before (interpreter + numpy), after
building, its peak, the bytes the columns hold, and lookups per second
(half present, half absent). The issue's goal: <= 100 MB RSS for a million.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from dbs_admin.sealed.repo.chunkindex import ENTRY_DTYPE, ChunkIndex  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic_blob(rng: np.random.Generator, n: int, packs: int) -> bytes:
    rows = np.zeros(n, dtype=ENTRY_DTYPE)
    rows["id"] = np.frombuffer(rng.bytes(32 * n), dtype="S32")
    rows["pack"] = rng.integers(0, packs, n)
    rows["offset"] = rng.integers(0, 8 << 20, n)
    rows["length"] = rng.integers(100, 256 << 10, n)
    rows["seq"] = rng.integers(0, 200, n)
    rows["flags"] = 1
    rows["raw"] = rows["length"] + 50
    return rows.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(21)
    per = args.chunks // args.objects
    base = rss_mib()
    index = ChunkIndex()
    probe = []
    t0 = time.perf_counter()
    for o in range(args.objects):
        blob = synthetic_blob(rng, per, max(1, per // 130))
        probe.append(blob[: 32])
        index.add_blob([f"packs/snap{o}.{p:032x}" for p in range(max(1, per // 130))], blob)
        del blob
    count = len(index)  # builds the sorted columns
    built = time.perf_counter() - t0
    after = rss_mib()
    absent = [rng.bytes(32) for _ in range(50_000)]
    present = [probe[i % len(probe)] for i in range(50_000)]
    t0 = time.perf_counter()
    hits = sum(cid in index for cid in present) + sum(cid in index for cid in absent)
    lookups = 100_000 / (time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"chunks {count:,} in {args.objects} index objects, built in {built:.2f} s")
    print(f"RSS: {base:.1f} MiB before (python + numpy), {after:.1f} MiB after, peak {peak:.1f} MiB; "
          f"columns {index.nbytes() / 2**20:.1f} MiB ({index.nbytes() / max(1, count):.0f} B a chunk)")
    print(f"lookups: {lookups:,.0f}/s ({hits:,} of 100,000 found; 50,000 expected)")
    goal = "met" if peak <= 100 else "NOT met"
    print(f"goal <= 100 MB RSS for 1M chunks: {goal} (peak {peak:.1f} MiB)")


if __name__ == "__main__":
    main()
