"""Benchmark of a backup to a repository target and a file target at once, against each alone, in one run.

    DBS_VAR_DIR=/tmp/var-bench python bench/mixed_targets.py --posts 5000 --images 60 [--rounds 3]

Why: ``dbs_backup --target repo --target files`` makes one capture, sealed as a
file and teed to a snapshot writer on a thread of its own
(``backups.repository.SnapshotTee``). Its cost should be about the slower of
the two alone (they overlap on two cores), never their sum plus a second
capture. Rounds are interleaved (file, repository, both, file, ...) after one
untimed backup of each kind, so every repository backup adds about the same
(nothing changed between rounds: the snapshot is nearly all deduplicated,
which is what a nightly backup of a quiet site is). Prints each median with
the peak RSS and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
os.environ.setdefault("DBS_LOG_LEVEL", "WARNING")

from bench.backup import in_child, seed_reference_site  # noqa: E402

PASSPHRASE = "bench passphrase, not a secret"


def backup(targets: list[str]) -> dict:
    from dbs_admin import create_backup

    result = create_backup(passphrase=PASSPHRASE, target=targets, label="bench")
    return {"targets": result.targets, "failed": result.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep an existing seed of the same size")
    args = parser.parse_args()

    import django
    from django.conf import settings

    var = Path(os.environ.get("DBS_VAR_DIR", ROOT / "var"))
    work = var / "bench-mixed"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "ARGON2": {"time_cost": 1, "memory_kib": 1024, "parallelism": 1,
                                                           "allow_weak": True},
                          "TARGETS": {"files": {"kind": "local", "path": str(work / "files")},
                                      "repo": {"kind": "local", "path": str(work / "repo"), "format": "repository"}}}
    django.setup()


    seed_reference_site(args.posts, args.images, reuse=args.reuse)
    shutil.rmtree(work, ignore_errors=True)
    kinds = {"file alone": ["files"], "repository alone": ["repo"], "both (teed)": ["repo", "files"]}
    for targets in kinds.values():  # the repository's first, full snapshot is not what is compared
        in_child(backup, targets)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    rss: dict[str, float] = {k: 0.0 for k in kinds}
    for _ in range(args.rounds):
        for kind, targets in kinds.items():
            result = in_child(backup, targets)
            assert not result["failed"], result
            times[kind].append(result["seconds"])
            rss[kind] = max(rss[kind], result["rss_mib"])
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"{args.posts} posts, {args.images} images, {args.rounds} interleaved rounds")
    for kind in kinds:
        runs = ", ".join(f"{t:.2f}" for t in times[kind])
        print(f"{kind:<18} median {statistics.median(times[kind]):6.2f} s  (runs {runs})  peak RSS {rss[kind]:.0f} MiB")
    both = statistics.median(times["both (teed)"])
    alone = [statistics.median(times[k]) for k in ("file alone", "repository alone")]
    print(f"both / slower alone = {both / max(alone):.2f}; both / sum of the two = {both / sum(alone):.2f}")


if __name__ == "__main__":
    main()
