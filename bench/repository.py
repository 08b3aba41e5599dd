"""Benchmark of incremental backups to a repository target, side by side with borg and restic in one run.

    DBS_VAR_DIR=/tmp/var-bench python bench/repository.py            # 20,000 posts, 300 images, SQLite
    DBS_VAR_DIR=/tmp/var-bench python bench/repository.py --reuse    # keep an existing seed of that size

The reference workload of ``bench/backup.py`` (``demo_seed``, not timed). For
each tool, in this order: the first backup; the "1% change" (200 of 20,000
posts edited and 3 new 100 KiB images, made between the runs, not timed);
a backup with nothing changed; a restore of the latest. Each line gives
wall seconds, bytes the repository grew by, and the peak RSS of the process
doing it. Every run is a forked child of this set-up Django process (as in
``bench/backup.py``), borg and restic each run as a child process of one.

Ours: ``create_backup(target="repo")`` with a passphrase (a repository is
read to deduplicate, so its key is opened at every backup: the Argon2id
cost of the settings is included), restore into a freshly migrated scratch
database and an empty media folder. Today's single-file logical backup and
restore (recipient key, no Argon2) run first as the reference for the
goals. borg (``repokey-blake2``, ``zstd,3``) and restic (its defaults) back
up the SQLite file and the media folder, file-level; Debian's packages,
skipped with a message when absent (apt-get install borgbackup restic).

Goals (issue #21): 1% change <= 0.5 s and <= 1.5 MB added; nothing changed
<= 0.3 s and <= 20 KB; first backup <= 1.5x the single-file backup; restore
latest no slower than the single-file restore; 30 daily snapshots with 1%
change each stored in <= 2x one single-file backup (``--dailies``: ours only,
after the restore). A worker keeps the repository key it unwrapped in memory
(``sealed.repo.keyfile``): the parent unwraps it once after the first backup,
so later backups skip Argon2 as a worker's would; ``--cold-key`` pays it every
time (a process per backup).

After the table, where ours spend their time: each stage of the 1% change and
nothing-changed backups, and of the restore, timed alone
(``bench/repository_stages.py``). ``--rounds N`` repeats the nothing-changed
backup and the restores (ours alternating with the single file's) N times and
reports medians.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
os.environ.setdefault("DBS_LOG_LEVEL", "WARNING")

from bench.backup import (  # noqa: E402
    SCRATCH,
    fresh_scratch,
    in_child,
    our_backup,
    our_restore,
    scratch_settings,
    seed_reference_site,
)
from bench.repository_stages import backup_stages, describe, restore_stages  # noqa: E402

PASSPHRASE = "bench passphrase, not a secret"


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def repo_backup() -> dict:
    from dbs_admin import create_backup

    result = create_backup(passphrase=PASSPHRASE, target="repo", label="bench")
    return {"added": result.size, "name": result.name}


def repo_restore(name: str, media: str) -> dict:
    from django.conf import settings

    from dbs_admin import restore_backup

    settings.MEDIA_ROOT = media
    result = restore_backup(name, target="repo", passphrase=PASSPHRASE, database=SCRATCH)
    return {"rows": sum(result.rows.values()), "files": result.files}


def warm_key(path: Path) -> None:
    """Unwrap the repository key in this (parent) process, as a long-lived worker that ran the first backup has
    it: the children forked afterwards find it in ``keyfile``'s in-memory cache instead of running Argon2."""
    from dbs_admin.sealed.repo import DirectoryStore, Repository

    Repository.open(DirectoryStore(path), passphrase=PASSPHRASE)


def run_tool(argv: list[str], env: dict, cwd: str | None = None) -> dict:
    """A tool as a child process; the forked child reports its child's peak RSS."""
    subprocess.run(argv, env={**os.environ, **env}, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"child_rss_mib": usage.ru_maxrss / 1024, "child_cpu": usage.ru_utime + usage.ru_stime}


class OnePercentChange:
    """200 posts edited, 3 new 100 KiB images (not timed), the same change in every run: the posts and the images
    of the n-th call come from a fixed seed, and ``undo`` puts the site back as it was seeded.

    Why undo: with ``--reuse`` the next run starts from this database. Edits left in place would make each run
    append to posts earlier runs had already grown, so the bytes a "1% change" adds would drift from run to
    run (they did, by +-0.3 MB) and the size goal could not be measured. ``dirty`` tells a seed an earlier run
    could not put back (killed): ``main`` seeds again then."""

    MARK = "Edited in the bench"

    def __init__(self, media: Path, posts: int):
        self.media, self.posts = media, posts
        self.originals: dict[int, dict] = {}  # pk -> the post's stored fields before its first edit
        self.files: list[Path] = []
        self.calls = 0

    @classmethod
    def dirty(cls) -> bool:
        from blog.models import Attachment, Post

        return (Post.objects.filter(content_md__contains=cls.MARK).exists()
                or Attachment.objects.filter(alt_text="bench").exists())

    def apply(self) -> None:
        from blog.models import Attachment, Post

        rng = random.Random(f"21-{self.calls}")  # each day of --dailies its own change; every run the same ones
        self.calls += 1
        pks = sorted(Post.objects.values_list("pk", flat=True))
        fields = [f.attname for f in Post._meta.concrete_fields if not f.primary_key]
        for pk in rng.sample(pks, max(1, self.posts // 100)):
            post = Post.objects.get(pk=pk)
            self.originals.setdefault(pk, {f: getattr(post, f) for f in fields})
            post.content_md += f"\n\n{self.MARK} ({rng.random()})."
            post.save()
        (self.media / "uploads").mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            name = f"uploads/bench-{len(self.files)}.jpg"
            (self.media / name).write_bytes(rng.randbytes(100 << 10))
            self.files.append(self.media / name)
            Attachment.objects.create(image=name, alt_text="bench")

    def undo(self) -> None:
        from django.db import transaction

        from blog.models import Attachment, Post

        with transaction.atomic():
            for pk, values in self.originals.items():
                Post.objects.filter(pk=pk).update(**values)  # update(): no save(), so updated_at is put back too
            Attachment.objects.filter(alt_text="bench").delete()
        for path in self.files:
            path.unlink(missing_ok=True)
        self.originals.clear()
        self.files.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="keep an existing seed of the same size")
    parser.add_argument("--dailies", type=int, default=30, help="snapshots in all for the 30-dailies figure "
                        "(0: skip it)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of the nothing-changed backup and of the "
                        "restores (ours alternating with the single file's); medians are reported")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage-by-stage breakdown of ours")
    parser.add_argument("--cold-key", action="store_true", help="run Argon2 at every backup (a process per "
                        "backup, as cron + manage.py) instead of keeping the key of a worker process")
    args = parser.parse_args()

    import django
    from django.conf import settings

    var = Path(os.environ.get("DBS_VAR_DIR", ROOT / "var"))
    settings.DATABASES[SCRATCH] = scratch_settings(settings.DATABASES["default"], var)
    work = var / "bench-repository"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {  # before set-up: the console's settings are read once
        **settings.DBS_ADMIN["TARGETS"], "repo": {"kind": "local", "path": str(work / "ours"),
                                                  "format": "repository"}}}
    django.setup()
    from django.db import connections

    from dbs_admin.sealed import Identity

    if connections["default"].vendor != "sqlite":
        raise SystemExit("this bench compares file-level tools on the SQLite reference site: unset DATABASE_URL")
    seed_reference_site(args.posts, args.images, reuse=args.reuse)
    if OnePercentChange.dirty():  # a run killed before it could undo its change: start from a fresh seed
        seed_reference_site(args.posts, args.images, reuse=False)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    media = Path(settings.MEDIA_ROOT)
    db_file = Path(connections["default"].settings_dict["NAME"])
    identity = Identity.generate()
    import dbs_admin.backups.create  # noqa: F401
    import dbs_admin.backups.restore  # noqa: F401

    change = OnePercentChange(media, args.posts)
    try:
        run(args, work, media, db_file, identity, change)
    finally:
        connections.close_all()
        change.undo()
        connections.close_all()


def run(args, work: Path, media: Path, db_file: Path, identity, change: OnePercentChange) -> None:
    from django.db import connections

    from blog.models import Post

    rows: list[tuple[str, str, dict]] = []
    single = in_child(our_backup, "logical", identity.recipient)
    rows.append(("single file", "backup", {**single, "added": single["size"]}))
    fresh_scratch()
    single_restores = [in_child(our_restore, single["path"], identity, str(work / "m0"))]
    rows.append(("single file", "restore", single_restores[0]))

    tools = {"ours": None}
    env_borg = {"BORG_PASSPHRASE": PASSPHRASE, "BORG_REPO": str(work / "borg"), "BORG_BASE_DIR": str(work / "bb"),
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    env_restic = {"RESTIC_PASSWORD": PASSPHRASE, "RESTIC_REPOSITORY": str(work / "restic"),
                  "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    if shutil.which("borg"):
        subprocess.run(["borg", "init", "-e", "repokey-blake2"], env={**os.environ, **env_borg}, check=True,
                       capture_output=True)
        tools["borg"] = env_borg
    else:
        print("borg not found: skipped (apt-get install borgbackup)")
    if shutil.which("restic"):
        subprocess.run(["restic", "init"], env={**os.environ, **env_restic}, check=True, capture_output=True)
        tools["restic"] = env_restic
    else:
        print("restic not found: skipped (apt-get install restic)")
    sources = [str(db_file), str(media)]

    def backup(tool: str, n: int) -> dict:
        if tool == "ours":
            if n and not args.no_stages:  # each stage alone first, while what is new is still new (not committed)
                breakdown[stages[n]] = in_child(backup_stages, PASSPHRASE)
            runs = [in_child(repo_backup) for _ in range(args.rounds if stages[n] == "nothing changed" else 1)]
            out = dict(runs[len(runs) // 2])
            out["seconds"] = statistics.median(r["seconds"] for r in runs)
            out["cpu"] = statistics.median(r["cpu"] for r in runs)
            out["rounds"] = [r["seconds"] for r in runs]
            return out
        repo = work / tool
        before = tree_bytes(repo)
        if tool == "borg":
            argv = ["borg", "create", "--compression", "zstd,3", f"::s{n}", *sources]
        else:
            argv = ["restic", "backup", "--quiet", *sources]
        out = in_child(run_tool, argv, tools[tool])
        out["added"] = tree_bytes(repo) - before
        out["rss_mib"], out["cpu"] = out.pop("child_rss_mib"), out.pop("child_cpu")
        return out

    stages = ["first backup", "1% change", "nothing changed"]
    breakdown: dict[str, dict] = {}
    names = {}
    for n, stage in enumerate(stages):
        if stage == "1% change":
            connections.close_all()
            change.apply()
            connections.close_all()
        for tool in tools:
            out = backup(tool, n)
            names[tool] = out.get("name")
            rows.append((tool, stage, out))
        if n == 0 and not args.cold_key:
            warm_key(work / "ours")
    for tool in tools:
        dest = work / f"restored-{tool}"
        dest.mkdir()
        if tool == "ours":
            runs = []
            for r in range(args.rounds):
                if r:  # the single file's restore again, alternating with ours (the first ran above)
                    fresh_scratch()
                    single_restores.append(in_child(our_restore, single["path"], identity, str(work / f"m{r}")))
                fresh_scratch()
                (work / f"restored-ours-{r}").mkdir()
                runs.append(in_child(repo_restore, names["ours"], str(work / f"restored-ours-{r}")))
            out = dict(runs[0])
            out["seconds"] = statistics.median(r["seconds"] for r in runs)
            out["cpu"] = statistics.median(r["cpu"] for r in runs)
            out["rounds"] = [r["seconds"] for r in runs]
            rows[1] = ("single file", "restore", {**single_restores[0], "rounds": [r["seconds"] for r in
                                                                                   single_restores],
                                                  "seconds": statistics.median(r["seconds"] for r in
                                                                               single_restores),
                                                  "cpu": statistics.median(r["cpu"] for r in single_restores)})
            if not args.no_stages:
                fresh_scratch()
                (work / "restored-stages").mkdir()
                breakdown["restore latest"] = in_child(restore_stages, names["ours"], PASSPHRASE,
                                                       str(work / "restored-stages"), SCRATCH)
        elif tool == "borg":
            out = in_child(run_tool, ["borg", "extract", "::s2"], tools[tool], str(dest))
            out["rss_mib"], out["cpu"] = out.pop("child_rss_mib"), out.pop("child_cpu")
        else:
            out = in_child(run_tool, ["restic", "restore", "latest", "--target", str(dest)], tools[tool])
            out["rss_mib"], out["cpu"] = out.pop("child_rss_mib"), out.pop("child_cpu")
        rows.append((tool, "restore latest", out))

    dailies = []
    for _day in range(len(stages), args.dailies):  # the three snapshots above count: 30 in all by default
        connections.close_all()
        change.apply()
        connections.close_all()
        dailies.append(in_child(repo_backup))
    print(f"{len(Post.objects.all())} posts; repository of ours: {tree_bytes(work / 'ours') / 2**20:.1f} MiB; "
          f"borg {tree_bytes(work / 'borg') / 2**20 if 'borg' in tools else 0:.1f} MiB; "
          f"restic {tree_bytes(work / 'restic') / 2**20 if 'restic' in tools else 0:.1f} MiB")
    print(f"{'tool':<12} {'operation':<16} {'seconds':>8} {'bytes added':>12} {'peak RSS MiB':>13} {'CPU s':>6}")
    for tool, stage, r in rows:
        added = f"{r['added']:12,d}" if "added" in r else f"{'':>12}"
        each = "  (" + ", ".join(f"{x:.2f}" for x in r["rounds"]) + ")" if len(r.get("rounds", [])) > 1 else ""
        cpu = f"{r['cpu']:6.2f}" if "cpu" in r else f"{'':>6}"
        print(f"{tool:<12} {stage:<16} {r['seconds']:8.2f} {added} {r['rss_mib']:13.0f} {cpu}{each}")
    if breakdown:
        print("ours, each stage alone (CPU seconds; bench/repository_stages.py says what each covers):")
    for stage, parts in breakdown.items():
        total = next(r["cpu"] for tool, st, r in rows if tool == "ours" and st == stage)
        print(f"  {stage:<16} {describe(parts, None if stage == 'restore latest' else total)}")
    ref_backup = rows[0][2]["seconds"]
    ref_restore = rows[1][2]["seconds"]
    ours = {stage: r for tool, stage, r in rows if tool == "ours"}
    print("goals: first backup <= 1.5x single file: "
          f"{ours['first backup']['seconds'] / ref_backup:.2f}x; 1% change <= 0.5 s, 1.5 MB: "
          f"{ours['1% change']['seconds']:.2f} s, {ours['1% change']['added'] / 1e6:.2f} MB; nothing changed "
          f"<= 0.3 s, 20 KB: {ours['nothing changed']['seconds']:.2f} s, {ours['nothing changed']['added'] / 1e3:.1f} "
          f"KB; restore latest <= single-file restore: {ours['restore latest']['seconds'] / ref_restore:.2f}x")
    if dailies:
        total = tree_bytes(work / "ours")
        daily = sorted(d["seconds"] for d in dailies)
        print(f"{args.dailies} daily snapshots (1% change each day after the first): repository "
              f"{total / 1e6:.1f} MB = {total / single['size']:.2f}x one single-file backup "
              f"({single['size'] / 1e6:.1f} MB; goal <= 2x); daily backup median {daily[len(daily) // 2]:.2f} s, "
              f"median added {sorted(d['added'] for d in dailies)[len(dailies) // 2] / 1e6:.2f} MB")
    print("key: " + ("Argon2 at every backup (--cold-key)" if args.cold_key else
                     "unwrapped once by the parent after the first backup and kept in memory, as a worker does"))
    from dbs_admin.models import Backup

    Path(single["path"]).unlink(missing_ok=True)
    Backup.objects.filter(label="bench").delete()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
