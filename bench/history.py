"""Benchmark of per-object history: what a save pays, what a snapshot costs, what the store weighs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dbs_history REDIS_URL=redis://127.0.0.1:6379/12 \\
        DBS_VAR_DIR=/tmp/var-history python bench/history.py
    python bench/history.py --saves 100          # SQLite + filesystem broker, quicker

Runs in a fresh test database (``test_<name>``, created and dropped here).

1. ``Post.save()`` with history on vs off (receivers disconnected), each save
   committed on its own, so the on-commit capture and the broker publish are
   inside the measured time. Target: at most 1.5x, since the snapshot itself
   is written by a worker, off the request path.
2. The snapshot task (``take_snapshot``) for a post with 5 images (~60 KB
   each, like the demo seed): the first version (copies 5 images) and later
   text edits (hash 5 images, store none). Floor: hashing the 5 images plus
   writing the version's json once with fsync.
3. The store after 100 edits of a post whose 5 images never change: each
   image must be stored once. Floor: the 5 images plus 100 json + md files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
os.environ.setdefault("DBS_LOG_LEVEL", "WARNING")
BENCH_QUEUE = "dbs-history-bench"  # snapshot messages of this run go here and are deleted at the end


def tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file() and p.name != ".lock"]
    return sum(p.stat().st_size for p in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saves", type=int, default=1000, help="saves measured each way (on and off)")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds the saves are split into")
    parser.add_argument("--edits", type=int, default=100, help="edits for the store-size figure")
    args = parser.parse_args()

    import django

    django.setup()
    import random
    import shutil

    from django.conf import settings
    from django.db import connection, transaction
    from django.test.utils import override_settings, setup_databases, teardown_databases

    from blog.models import Category, Post, Tag
    from blog.seeding import _make_image
    from dbs_admin.history import signals
    from dbs_admin.history.collect import capture, collect_images
    from dbs_admin.history.snapshot import make_payload, object_history, take_snapshot
    from demo_site.celery import app

    app.conf.task_routes = {"dbs_admin.history.snapshot_object": {"queue": BENCH_QUEUE}}
    work = Path(tempfile.mkdtemp(prefix="dbs-history-bench-"))
    media = work / "media"
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        with override_settings(MEDIA_ROOT=str(media), DBS_ADMIN={**settings.DBS_ADMIN,
                                                                  "HISTORY_ROOT": str(work / "history")}):
            rng = random.Random(7)
            (media / "uploads").mkdir(parents=True)
            images = []
            for i in range(5):
                name = f"uploads/bench-{i}.png"
                (media / name).write_bytes(_make_image(rng, i))
                images.append(f"![figure {i}](/media/{name})")
            words = "backup restore snapshot version history diff tag image post draft".split()
            paragraphs = [" ".join(rng.choices(words, k=60)).capitalize() + "." for _ in range(8)]
            body = "\n\n".join(p + "\n\n" + img for p, img in zip(paragraphs, images + [""] * 3))
            category = Category.objects.create(name="Bench", slug="bench")
            tags = [Tag.objects.create(name=f"tag-{i}", slug=f"tag-{i}") for i in range(4)]
            with transaction.atomic():
                post = Post.objects.create(title="Bench post", content_md=body, category=category)
                post.tags.set(tags)
            broker = settings.CELERY_BROKER_URL
            engine = connection.vendor

            # 1. save overhead --------------------------------------------------------------------
            def round_of(n: int) -> float:
                start = time.perf_counter()
                for i in range(n):
                    post.title = f"Bench post {i}"
                    post.save()
                return (time.perf_counter() - start) / n

            signals.disconnect_signals()
            round_of(20)  # warm up
            # Short rounds, alternating, many times: the machine's load drifts, the best rounds do not.
            off, on = [], []
            per_round = max(10, args.saves // args.rounds)
            for _ in range(args.rounds):
                signals.disconnect_signals()
                off.append(round_of(per_round))
                signals.connect_signals()
                on.append(round_of(per_round))
            # Headline: the median of the on/off ratios of neighbouring rounds, which share the machine's load.
            median_ratio = statistics.median(b / a for a, b in zip(off, on))
            print(f"database: {engine}; broker: {broker.split('://')[0]}; load average {os.getloadavg()[0]:.1f}")
            print(f"Post.save() history off: median {statistics.median(off) * 1e3:.3f} ms (best {min(off) * 1e3:.3f})"
                  f"   on: median {statistics.median(on) * 1e3:.3f} ms (best {min(on) * 1e3:.3f})")
            print(f"Post.save() ratio on/off: {median_ratio:.2f}x (median of {args.rounds} paired rounds of "
                  f"{per_round} saves; target <= 1.5x)")

            # 2. snapshot task time for a post with 5 images ----------------------------------------
            signals.disconnect_signals()
            snap = Post.objects.create(title="Snapshot post", slug="snapshot-post", content_md=body,
                                       category=category)
            first = time.perf_counter()
            take_snapshot(make_payload(Post, snap.pk, capture(Post, snap.pk)))
            first = time.perf_counter() - first
            times = []
            for i in range(20):
                Post.objects.filter(pk=snap.pk).update(excerpt=f"edit {i}")
                payload = make_payload(Post, snap.pk, capture(Post, snap.pk))
                t0 = time.perf_counter()
                take_snapshot(payload)
                times.append(time.perf_counter() - t0)
            floor_times = []
            for _ in range(5):
                t0 = time.perf_counter()
                collect_images(Post, payload["data"])
                with open(work / "floor.json", "w") as f:
                    f.write(__import__("json").dumps(payload["data"], indent=2))
                    f.flush()
                    os.fsync(f.fileno())
                floor_times.append(time.perf_counter() - t0)
            median, floor = statistics.median(times), min(floor_times)
            image_kib = sum(p.stat().st_size for p in (media / "uploads").iterdir()) // 1024
            print(f"snapshot task, 5 images ({image_kib} KiB): "
                  f"first version {first * 1e3:.1f} ms, later edits median {median * 1e3:.1f} ms; "
                  f"floor {floor * 1e3:.1f} ms; ratio {median / floor:.2f}x")

            # 3. store size after N edits with 5 unchanged images ------------------------------------
            sized = Post.objects.create(title="Store post", slug="store-post", content_md=body, category=category)
            for i in range(args.edits + 1):
                if i:
                    Post.objects.filter(pk=sized.pk).update(excerpt=f"edit number {i}")
                take_snapshot(make_payload(Post, sized.pk, capture(Post, sized.pk)))
            history = object_history(Post, "store-post")
            total, count = tree_size(history.dir)
            image_bytes, image_files = tree_size(history.dir / "images")
            stored_elsewhere = len(list(history.dir.glob("updates/*/images/*")))
            docs = sum(p.stat().st_size for p in history.dir.rglob("*") if p.suffix in {".json", ".md"})
            media_bytes = sum(p.stat().st_size for p in (media / "uploads").iterdir())
            print(f"store after {args.edits} edits (5 unchanged images, {media_bytes // 1024} KiB): "
                  f"{len(history.versions())} versions, {total / 1024:.0f} KiB in {count} files; "
                  f"images stored {image_files} ({image_bytes // 1024} KiB), in updates {stored_elsewhere}; "
                  f"floor {(media_bytes + docs) / 1024:.0f} KiB; ratio {total / (media_bytes + docs):.2f}x")
    finally:
        teardown_databases(old_config, verbosity=0)
        shutil.rmtree(work, ignore_errors=True)
        _drop_bench_messages(settings)


def _drop_bench_messages(settings) -> None:
    """Delete this run's unconsumed snapshot messages (never anyone else's)."""
    if os.environ.get("REDIS_URL"):
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"]).delete(BENCH_QUEUE)
        return
    import json

    folder = Path(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("data_folder_out", ""))
    for path in folder.glob("*.msg") if folder.is_dir() else ():
        try:
            info = json.loads(path.read_text())["properties"]["delivery_info"]
        except (OSError, ValueError, KeyError):
            continue
        if info.get("routing_key") == BENCH_QUEUE:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
