"""Benchmark of a storage target on S3 (moto's server on a loopback port) against boto3's own transfers.

    python bench/s3.py                      # a 1 GiB backup file, 3 rounds
    python bench/s3.py --size-mib 256 --rounds 1

What is measured, each in a forked child (its own peak RSS, ``ru_maxrss``), medians over ``--rounds``:
- upload: ``StorageTarget.put`` (what ``dbs_backup --target s3`` does with the sealed file: one local read for
  the SHA-256 and S3's part checksums, boto3's managed multipart upload with ``ChecksumAlgorithm=SHA256``,
  the server's checksum compared, the sidecar written) vs the floor ``boto3 upload_file`` of the same file
  (the same TransferConfig: django-storages' default);
- download: ``StorageTarget.fetch`` (what a restore or drill does: boto3's managed download written in
  order while hashed, compared with the sidecar, fsynced, linked) vs the floor ``boto3 download_file``.
Goal: each <= 1.2x its floor. Peak RSS is also measured with a file an eighth the size: constant memory
means the two agree, whatever the size.

The file is random bytes named as a backup (the target neither knows nor cares what is inside: sealing is
measured by bench/backup.py). Every child starts after ``os.sync()``; objects are deleted between rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DBS_LOG_LEVEL", "WARNING")
MiB = 1024 * 1024
GOAL = 1.2


def in_child(func, *args) -> dict:
    """Run ``func(*args)`` in a forked child; its result dict with ``seconds`` and ``rss_mib`` (peak RSS)."""
    os.sync()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            started = time.perf_counter()
            out = func(*args) or {}
            out["seconds"] = time.perf_counter() - started
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
        out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with os.fdopen(write, "w") as f:
            json.dump(out, f)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    if "error" in out:
        raise SystemExit(f"{func.__name__} failed: {out['error']}")
    return out


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MiB))
            f.write(block)
            left -= len(block)


# --- operations (each in a child) --------------------------------------------------------------------------

def ours_upload(path: str, name: str) -> dict:
    from dbs_admin.targets import get_target

    get_target("s3").put(Path(path), name)
    return {}


def floor_upload(path: str, key: str) -> dict:
    storage = _storage()
    storage.connection.meta.client.upload_file(path, storage.bucket_name, key, Config=storage.transfer_config)
    return {}


def ours_download(name: str, dest: str) -> dict:
    from dbs_admin.targets import get_target

    get_target("s3").fetch(name, Path(dest))
    return {}


def floor_download(key: str, dest: str) -> dict:
    storage = _storage()
    storage.connection.meta.client.download_file(storage.bucket_name, key, dest, Config=storage.transfer_config)
    return {}


def _storage():
    from django.core.files.storage import storages

    return storages["backups"]


def _clear(bucket: str) -> None:
    client = _storage().connection.meta.client
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def measure(size: int, rounds: int, work: Path, bucket: str) -> dict[str, list[dict]]:
    from dbs_admin.targets.naming import backup_file_name

    source = work / "backup.bin"
    make_file(source, size)
    results: dict[str, list[dict]] = {k: [] for k in ("floor upload", "upload", "floor download", "download")}
    for n in range(rounds):
        from datetime import UTC, datetime

        name = backup_file_name(datetime.now(UTC), "logical", f"bench-{n}")
        results["floor upload"].append(in_child(floor_upload, str(source), f"floor-{n}"))
        results["upload"].append(in_child(ours_upload, str(source), name))
        results["floor download"].append(in_child(floor_download, f"floor-{n}", str(work / f"floor-{n}.bin")))
        results["download"].append(in_child(ours_download, name, str(work / f"ours-{n}.bin")))
        for got in (work / f"floor-{n}.bin", work / f"ours-{n}.bin"):
            assert got.stat().st_size == size
            got.unlink()
        _clear(bucket)
    source.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from dbs_admin.sealed import Identity
    from tests.services import s3_server

    with s3_server() as server, tempfile.TemporaryDirectory(prefix="dbs-bench-s3-") as tmp:
        bucket = "dbs-bench"
        server.client().create_bucket(Bucket=bucket)
        os.environ.update(DJANGO_SETTINGS_MODULE="tests.s3_settings", DBS_TEST_S3_ENDPOINT=server.endpoint_url,
                          DBS_TEST_S3_BUCKET=bucket, DBS_TEST_RECIPIENT=Identity.generate().recipient,
                          DBS_VAR_DIR=str(Path(tmp) / "var"))
        import django

        django.setup()
        work = Path(tmp)
        size = args.size_mib * MiB
        print(f"S3 storage target vs boto3 on moto's server ({server.endpoint_url}), a {args.size_mib} MiB file, "
              f"{args.rounds} round(s)")
        big = measure(size, args.rounds, work, bucket)
        small = measure(size // 8, 1, work, bucket)
        shutil.rmtree(work / "var", ignore_errors=True)

    failed = False
    for op in ("upload", "download"):
        ours = statistics.median(r["seconds"] for r in big[op])
        floor = statistics.median(r["seconds"] for r in big[f"floor {op}"])
        ratio = ours / floor
        failed |= ratio > GOAL
        rounds = ", ".join(f"{r['seconds']:.1f}" for r in big[op])
        floor_rounds = ", ".join(f"{r['seconds']:.1f}" for r in big[f"floor {op}"])
        print(f"{op:<9} ours {ours:6.2f} s ({size / MiB / ours:4.0f} MiB/s; rounds {rounds})  boto3 {floor:6.2f} s "
              f"({size / MiB / floor:4.0f} MiB/s; rounds {floor_rounds})  ratio {ratio:.2f}x (goal <= {GOAL}x)")
        rss_big = max(r["rss_mib"] for r in big[op])
        rss_small = max(r["rss_mib"] for r in small[op])
        rss_floor = max(r["rss_mib"] for r in big[f"floor {op}"])
        print(f"{'':<9} peak RSS ours {rss_big:.0f} MiB at {args.size_mib} MiB, {rss_small:.0f} MiB at "
              f"{args.size_mib // 8} MiB; boto3 {rss_floor:.0f} MiB")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
