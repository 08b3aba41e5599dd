"""Benchmark of the sealed container: seal, verify and decrypt, against a floor measured in the same run.

    python bench/sealed.py                 # 256 MiB of random bytes and 256 MiB of JSON rows
    python bench/sealed.py --size-mib 64   # quicker

Each operation runs in its own child process, which reports its wall time and
peak RSS (``ru_maxrss``), so memory figures are per operation. The floor is
what any encrypted, duplicated backup must at least do: one AES-256-GCM pass
over the input plus writing it twice (with fsync, as seal does). Targets:
seal and decrypt within 3x the floor, keyless verify of an intact file within 2x.
Argon2id runs with its default cost (t=3, 64 MiB), as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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


def bench(kind: str, src: Path, work: Path, size: int) -> list[dict]:
    sealed = work / f"{kind}.dbs"
    results = []
    argon2 = run_child("argon2", src, work / "-")
    results.append({"op": "argon2 (in each)", **argon2})
    floor = run_child("floor", src, work / "floor")
    results.append({"op": "floor", **floor})
    steps = [("seal", src, sealed, 3.0), ("verify", sealed, work / "-", 2.0),
             ("decrypt", sealed, work / f"{kind}.out", 3.0), ("verify-decrypt", sealed, work / "-", None)]
    for op, a, b, target in steps:
        r = run_child(op, a, b)
        r.update(op=op, ratio=r["seconds"] / floor["seconds"], target=target)
        if op != "verify":  # derives the key: also show the ratio without Argon2's fixed cost
            r["ratio_without_argon2"] = max(0.0, r["seconds"] - argon2["seconds"]) / floor["seconds"]
        results.append(r)
    sealed.unlink()
    for r in results:
        r["mb_per_s"] = size / r["seconds"] / 1e6
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--child", nargs=3, metavar=("OP", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    size = args.size_mib * MIB
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="dbs-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        for kind, make in (("random", make_random), ("json", make_json_rows)):
            src = work / f"{kind}.in"
            make(src, size)
            results = bench(kind, src, work, size)
            src.unlink()
            all_results[kind] = results
            python = sys.version.split()[0]
            print(f"\n{args.size_mib} MiB of {kind} input (python {python}, {os.cpu_count()} cpus)")
            print(f"{'operation':16} {'seconds':>8} {'cpu s':>7} {'MB/s':>8} {'peak RSS':>10} {'x floor':>8} "
                  f"{'target':>7}   x floor without Argon2")
            for r in results:
                target = f"<= {r['target']:.0f}x" if r.get("target") else ""
                verdict = "" if not r.get("target") else (" ok" if r["ratio"] <= r["target"] else " MISSED")
                ratio = f"{r['ratio']:.2f}" if "ratio" in r else ("1.00" if r["op"] == "floor" else "")
                rate = "" if r["op"].startswith("argon2") else f"{r['mb_per_s']:.0f}"
                print(f"{r['op']:16} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} {rate:>8} "
                      f"{r['peak_rss_mib']:8.0f} MiB "
                      f"{ratio:>8} {target:>7}{verdict:7}"
                      + (f" {r['ratio_without_argon2']:.2f}" if "ratio_without_argon2" in r else ""))
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
