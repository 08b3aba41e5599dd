"""How long Restore… step 1 takes for a large backup on an SFTP target: the manifest by ranges vs a download.

Seals ``--gib`` GiB of random data (with a real manifest) straight into the loopback sshd's folder
(``scripts/test-sshd.sh``), then times, in the same run:
- the metadata-only read (``SftpTarget.open_ranged`` + ``sealed.read_manifest``), bytes fetched counted;
- the whole-file fetch the console did before (``SftpTarget.fetch``), the floor of the old path.

    .venv/bin/python bench/remote_manifest.py [--gib 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def random_source(size: int, chunk: int = 4 << 20):
    left = size
    while left > 0:
        n = min(chunk, left)
        yield os.urandom(n)
        left -= n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0, help="payload size in GiB (the file is about twice that)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the sealed file for another run")
    args = parser.parse_args()

    from dbs_admin.sealed import Argon2Params, read_manifest, seal
    from dbs_admin.targets.sftp import SftpTarget, _RemoteReader
    from tests.services import ssh_server

    server = ssh_server()
    folder = server.root / "bench-remote-manifest"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"dbs-20261207T000000000000Z-logical-bench{int(args.gib * 1000)}.dbs"
    path = folder / name
    passphrase = "bench remote manifest"
    if not path.exists():
        started = time.monotonic()
        seal(random_source(int(args.gib * (1 << 30))), path, passphrase=passphrase,
             argon2=Argon2Params(time_cost=1, memory_kib=1024, parallelism=1), allow_weak_argon2=True,
             manifest={"kind": "logical", "counts": {"blog.Post": 20000}, "files": 300})
        print(f"sealed {path.stat().st_size / 2**30:.2f} GiB in {time.monotonic() - started:.1f} s")
    size = path.stat().st_size
    target = SftpTarget("bench", host=server.host, port=server.port, username=server.username,
                        key_filename=str(server.key_path), known_hosts=str(server.known_hosts), path=str(folder),
                        timeout=30)

    ranged, fetched = [], []
    for _ in range(args.rounds):
        before = _RemoteReader.fetched_total
        started = time.monotonic()
        with target.open_ranged(name) as f:
            manifest = read_manifest(f, size, passphrase=passphrase)
        ranged.append(time.monotonic() - started)
        fetched.append(_RemoteReader.fetched_total - before)
        assert manifest["counts"]["blog.Post"] == 20000
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    started = time.monotonic()
    try:
        with target.open(name) as src, open(work / name, "wb") as dst:  # the old path: fetch it all
            shutil.copyfileobj(src, dst, 4 << 20)
        whole = time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"file: {size:,} bytes ({size / 2**30:.2f} GiB) on {target.url}")
    share = 100 * statistics.median(fetched) / size
    print(f"manifest by ranges: median {statistics.median(ranged):.3f} s over {args.rounds} rounds, "
          f"{statistics.median(fetched):,.0f} bytes fetched ({share:.4f}% of the file)")
    print(f"whole-file download (the old step 1): {whole:.1f} s, {size:,} bytes")
    print(f"ratio: {whole / statistics.median(ranged):.0f}x faster, "
          f"{size / statistics.median(fetched):.0f}x fewer bytes")
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
