"""Benchmark of the sealed container: seal, verify and decrypt, against a floor measured in the same run.

    python bench/sealed.py                 # 256 MiB of random bytes and 256 MiB of JSON rows
    python bench/sealed.py --size-mib 64   # quicker
    python bench/sealed.py --size-mib 128 --kinds random --rounds 5   # the container issue's target

Each operation runs in its own child process, which reports its wall time and
peak RSS (``ru_maxrss``), so memory figures are per operation. The floor is
what any encrypted, duplicated backup must at least do: one AES-256-GCM pass
over the input plus writing it twice (with fsync, as seal does). Targets:
seal and decrypt within 3x the floor, keyless verify of an intact file within 2x.
Argon2id runs with its default cost (t=3, 64 MiB), as in production. Each figure is the median of
``--rounds`` interleaved rounds (3); a ratio is the median of each round's ratio to that round's floor.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSPHRASE = "bench passphrase"
MIB = 1 << 20


def make_random(path: Path, size: int) -> None:
    rng = random.Random(1)
    with open(path, "wb") as f:
        for done in range(0, size, 4 * MIB):
            f.write(rng.randbytes(min(4 * MIB, size - done)))


def make_json_rows(path: Path, size: int) -> None:
    """Deterministic JSON rows shaped like a logical backup (one object per line)."""
    rng = random.Random(2)
    words = ["alpha", "backup", "django", "sealed", "post", "draft", "published", "tag", "image", "note"]
    written = 0
    with open(path, "wb") as f:
        pk = 0
        while written < size:
            lines = []
            for _ in range(2000):
                pk += 1
                row = {"model": "blog.post", "pk": pk, "fields": {
                    "title": " ".join(rng.choices(words, k=5)).title(),
                    "slug": f"post-{pk}-{rng.randrange(10**6)}",
                    "status": rng.choice(["draft", "published"]),
                    "views": rng.randrange(100000),
                    "body": " ".join(rng.choices(words, k=rng.randrange(20, 80))),
                    "created_at": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T12:00:00Z",
                }}
                lines.append(json.dumps(row, separators=(",", ":")))
            chunk = ("\n".join(lines) + "\n").encode()[: size - written]
            f.write(chunk)
            written += len(chunk)


def peak_rss_mib() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss would include the forking parent's size)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(op: str, src: str, dst: str) -> dict:
    """Run one operation in this (child) process; return seconds and peak RSS."""
    from dbs_admin.sealed import open_sealed, seal, verify

    start = time.perf_counter()
    cpu_start = os.times()
    extra: dict = {}
    if op == "floor":
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(os.urandom(32))
        with open(src, "rb") as f, open(dst + ".1", "wb") as a, open(dst + ".2", "wb") as b:
            index = 0
            while chunk := f.read(MIB):
                sealed = aead.encrypt(index.to_bytes(12, "big"), chunk, b"h" * 32)
                a.write(sealed)
                b.write(sealed)
                index += 1
            a.flush()
            b.flush()
            os.fsync(a.fileno())
            os.fsync(b.fileno())
        os.unlink(dst + ".1")
        os.unlink(dst + ".2")
    elif op == "argon2":  # the fixed cost of the default passphrase slot, part of seal and decrypt
        from dbs_admin.sealed.keys import new_data_key, wrap_key_slots

        wrap_key_slots(new_data_key(), passphrase=PASSPHRASE)
    elif op == "seal":
        report = seal(src, dst, passphrase=PASSPHRASE)
        extra = {"sealed_size": report.size, "compressed_size": report.compressed_size}
    elif op == "verify":
        report = verify(src)
        assert report.intact, report
    elif op == "decrypt":
        with open_sealed(src, passphrase=PASSPHRASE) as reader:
            reader.read_all_to(dst)
        os.unlink(dst)
    elif op == "verify-decrypt":
        report = verify(src, passphrase=PASSPHRASE)
        assert report.ok and report.decrypted, report
    seconds = time.perf_counter() - start
    cpu_end = os.times()
    extra["cpu_seconds"] = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    peak = peak_rss_mib()
    return {"seconds": seconds, "peak_rss_mib": peak, **extra}


def run_child(op: str, src: Path, dst: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", op, str(src), str(dst)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def bench(kind: str, src: Path, work: Path, size: int, rounds: int = 3) -> list[dict]:
    """Every operation ``rounds`` times, interleaved (floor, seal, verify... then again); medians per operation.

    Why interleaved medians: on a shared machine the load changes from one second to the next, and a floor
    measured just before its operations shares their conditions; noise only ever adds time.
    """
    sealed = work / f"{kind}.dbs"
    steps = [("seal", src, sealed, 3.0), ("verify", sealed, work / "-", 2.0),
             ("decrypt", sealed, work / f"{kind}.out", 3.0), ("verify-decrypt", sealed, work / "-", None)]
    runs: dict[str, list[dict]] = {}
    for _ in range(rounds):
        runs.setdefault("argon2 (in each)", []).append(run_child("argon2", src, work / "-"))
        runs.setdefault("floor", []).append(run_child("floor", src, work / "floor"))
        for op, a, b, _target in steps:
            runs.setdefault(op, []).append(run_child(op, a, b))
        sealed.unlink()
    results = []
    for op, rs in runs.items():
        r = dict(rs[0])
        for key in ("seconds", "cpu_seconds"):
            r[key] = statistics.median(x[key] for x in rs)
        r["peak_rss_mib"] = max(x["peak_rss_mib"] for x in rs)
        r["op"] = op
        r["each"] = [x["seconds"] for x in rs]
        results.append(r)
    by_op = {r["op"]: r for r in results}
    floor, argon2 = by_op["floor"], by_op["argon2 (in each)"]
    for op, _a, _b, target in steps:
        r = by_op[op]
        # the median of per-round ratios: each op against the floor of its own round
        r.update(ratio=statistics.median(x["seconds"] / f["seconds"] for x, f in zip(runs[op], runs["floor"])),
                 target=target)
        if op != "verify":  # derives the key: also show the ratio without Argon2's fixed cost
            r["ratio_without_argon2"] = max(0.0, r["seconds"] - argon2["seconds"]) / floor["seconds"]
    for r in results:
        r["mb_per_s"] = size / r["seconds"] / 1e6
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--kinds", default="random,json", help="inputs to run, comma-separated (random,json)")
    parser.add_argument("--child", nargs=3, metavar=("OP", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    size = args.size_mib * MIB
    all_results = {}
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="dbs-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        makers = {"random": make_random, "json": make_json_rows}
        for kind in args.kinds.split(","):
            make = makers[kind]
            src = work / f"{kind}.in"
            make(src, size)
            results = bench(kind, src, work, size, args.rounds)
            src.unlink()
            all_results[kind] = results
            python = sys.version.split()[0]
            print(f"\n{args.size_mib} MiB of {kind} input (python {python}, {os.cpu_count()} cpus)")
            print(f"{'operation':16} {'seconds':>8} {'cpu s':>7} {'MB/s':>8} {'peak RSS':>10} {'x floor':>8} "
                  f"{'target':>7}   x floor without Argon2; each round (s)")
            for r in results:
                target = f"<= {r['target']:.0f}x" if r.get("target") else ""
                verdict = "" if not r.get("target") else (" ok" if r["ratio"] <= r["target"] else " MISSED")
                ratio = f"{r['ratio']:.2f}" if "ratio" in r else ("1.00" if r["op"] == "floor" else "")
                rate = "" if r["op"].startswith("argon2") else f"{r['mb_per_s']:.0f}"
                print(f"{r['op']:16} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} {rate:>8} "
                      f"{r['peak_rss_mib']:8.0f} MiB "
                      f"{ratio:>8} {target:>7}{verdict:7}"
                      + (f" {r['ratio_without_argon2']:.2f}" if "ratio_without_argon2" in r else "     ")
                      + "   " + " ".join(f"{x:.2f}" for x in r["each"]))
            seal_row = next(r for r in results if r["op"] == "seal")
            print(f"sealed size {seal_row['sealed_size'] / MIB:.1f} MiB "
                  f"(compressed {seal_row['compressed_size'] / MIB:.1f} MiB, two copies + parity)")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = " (the machine was busy: wall-clock ratios are pessimistic)" if load > cpus else ""
    print(f"\nload average at the end: {load:.2f} on {cpus} cpus{busy}")
    if args.json:
        print(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()
