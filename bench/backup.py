"""Benchmark of full backups and restores against a floor measured in the same run.

    DBS_VAR_DIR=/tmp/var-bench python bench/backup.py                       # 20,000 posts, 300 images, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dbs_bench DBS_VAR_DIR=/tmp/var-bench-pg python bench/backup.py
    DATABASE_URL=mysql://root@127.0.0.1:3306/dbs_bench DBS_VAR_DIR=/tmp/var-bench-my python bench/backup.py
    DBS_VAR_DIR=/tmp/var-bench python bench/backup.py --posts 200000       # the memory target (10x)

The database is seeded with ``demo_seed`` (not timed; ``--reuse`` keeps an
existing seed of the same size). Each operation then runs in a forked child of
this already set-up Django process (our modules imported, as Django's are), so
its time excludes start-up on both sides and its peak RSS (``ru_maxrss`` of
the child) is its own. Every child starts after an ``os.sync()`` (and, on PostgreSQL and MariaDB, once the
server has written back its own dirty pages: ``settle_server``), so none pays
for writing back what the one before left in the page cache. Everything runs
``--rounds`` times (3), each floor just before ours; medians are reported,
with each round's time beside them.

Floors (what any backup of this site must at least do):
- backup: SQLite's online backup of the database file + an uncompressed tar
  of MEDIA_ROOT (PostgreSQL: ``pg_dump -Fc`` + tar; MariaDB:
  ``mariadb-dump --single-transaction | zstd`` + tar), each file fsynced
  (``pg_dump`` does that itself; a backup is made once it is on disk);
- restore: copying that file back + untar (PostgreSQL: ``pg_restore`` into
  an empty database + untar; MariaDB: ``mariadb db < dump`` into an empty
  database + untar; the dump is decompressed before, not timed).
Ours additionally compress, encrypt, hash, add parity and write everything
twice, then verify, and store the file on the default (local) target, the
path the console and ``dbs_backup`` take. Restores go into a freshly
migrated scratch database and an empty media folder. Keys: an X25519 recipient, so no Argon2 is measured.
Targets: native backup <= 4x floor, logical backup <= 8x, logical restore
<= 10x (MariaDB: native backup <= 1.3x, logical restore <= 3x; PostgreSQL:
native backup <= 1.2x, logical restore <= 2x; SQLite, whole command with
its start-up: logical backup <= 1.0 s, native <= 0.8 s, logical restore
<= 1.5 s); peak RSS < 250 MB at 200,000 posts.

After the table: each stage of the sealed path timed alone (``bench/stages.py``:
capture, serialise, compress, encrypt, hash, parity, write twice, verify) next
to the pipelined run, and the start-up of a command against ``python -c pass``
and a bare ``django.setup()`` (``--no-stages`` skips both).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
os.environ.setdefault("DBS_LOG_LEVEL", "WARNING")
SCRATCH = "bench_scratch"
IDENTITY_PASSPHRASE = "bench identity"  # noqa: S105 - a throwaway key made for one run


def in_child(func, *args):
    """Run ``func(*args)`` in a forked child; returns (its result dict, seconds it measured, peak RSS MiB)."""
    from django.db import connections

    settle_server()
    connections.close_all()
    os.sync()  # every operation starts with nothing left to write back (an fsync would otherwise pay for it)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        code = 0
        try:
            started = time.perf_counter()
            out = func(*args) or {}
            out["seconds"] = time.perf_counter() - started
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
        usage, waited = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        out["rss_mib"] = usage.ru_maxrss / 1024
        # CPU seconds of the child and of the processes it waited for: steadier than wall time on a busy host
        out["cpu"] = usage.ru_utime + usage.ru_stime + waited.ru_utime + waited.ru_stime
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


def settle_server() -> None:
    """Let the database server write back what the last operation left dirty, before the next one is timed.

    Why: ``os.sync()`` settles the files, not a server's own buffer pool. After a restore, InnoDB (whose
    page cleaner flushes at ``innodb_io_capacity``, 200 pages a second by default) and PostgreSQL kept writing
    back for seconds into whichever operation came next, the floor's or ours, so the same backup measured
    0.96 s in one run and 1.24 s in the next. Each operation now starts from a server with nothing to flush.
    """
    from django.db import connections

    conn = connections["default"]
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    elif conn.vendor == "mysql":
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
            before = cursor.fetchone()[0]
            cursor.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")  # the page cleaner flushes at full speed
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                    if int(cursor.fetchone()[1]) <= 16:
                        break
                    time.sleep(0.05)
            finally:
                cursor.execute("SET GLOBAL innodb_max_dirty_pages_pct = %s", [before])


def tar_media(media: Path, dest: Path) -> int:
    with tarfile.open(dest, "w") as tar:
        tar.add(media, arcname="media")
    durable(dest)
    return dest.stat().st_size


def durable(path: Path) -> None:
    """fsync ``path``: a backup is only made once it is on disk. ``pg_dump`` does it itself (unless ``--no-sync``)
    and our sealed writer does it; the floors written by other tools must pay for it too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def untar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


# --- operations (each runs in a child) -----------------------------------------------------------------

def floor_backup(work: str) -> dict:
    from django.conf import settings
    from django.db import connections

    work_p = Path(work)
    conn = connections["default"]
    if conn.vendor == "sqlite":
        src = sqlite3.connect(conn.settings_dict["NAME"])
        dst = sqlite3.connect(work_p / "floor.sqlite3")
        src.backup(dst)
        src.close()
        dst.close()
        durable(work_p / "floor.sqlite3")
        db_size = (work_p / "floor.sqlite3").stat().st_size
    elif conn.vendor == "mysql":
        with open(work_p / "floor.sql.zst", "wb") as out:
            dump = subprocess.Popen(["mariadb-dump", *mysql_args(conn.settings_dict), "--single-transaction",
                                     "--quick", "--hex-blob", conn.settings_dict["NAME"]], stdout=subprocess.PIPE)
            subprocess.run(["zstd", "-q", "-c"], stdin=dump.stdout, stdout=out, check=True)
            dump.stdout.close()
            assert dump.wait() == 0, "mariadb-dump failed"
        durable(work_p / "floor.sql.zst")
        db_size = (work_p / "floor.sql.zst").stat().st_size
    else:
        s = conn.settings_dict
        subprocess.run(["pg_dump", "-Fc", "-h", s["HOST"], "-p", str(s["PORT"] or 5432), "-U", s["USER"],
                        "-f", str(work_p / "floor.dump"), s["NAME"]], check=True)
        db_size = (work_p / "floor.dump").stat().st_size
    tar_size = tar_media(Path(settings.MEDIA_ROOT), work_p / "media.tar")
    return {"size": db_size + tar_size}


def floor_restore(work: str) -> dict:
    from django.db import connections

    work_p = Path(work)
    conn = connections[SCRATCH]
    if conn.vendor == "sqlite":
        shutil.copyfile(work_p / "floor.sqlite3", work_p / "floor-restored.sqlite3")
    elif conn.vendor == "mysql":
        with open(work_p / "floor.sql", "rb") as dump:
            subprocess.run(["mariadb", *mysql_args(conn.settings_dict), conn.settings_dict["NAME"]], stdin=dump,
                           check=True)
    else:
        s = conn.settings_dict
        subprocess.run(["pg_restore", "--no-owner", "-h", s["HOST"], "-p", str(s["PORT"] or 5432), "-U", s["USER"],
                        "-d", s["NAME"], str(work_p / "floor.dump")], check=True)
    untar(work_p / "media.tar", work_p / "floor-media")
    return {}


def mysql_args(s: dict) -> list[str]:
    """Connection options of the MariaDB clients (a password goes through MYSQL_PWD, set in main())."""
    return [f"--host={s['HOST'] or '127.0.0.1'}", f"--port={s['PORT'] or 3306}", f"--user={s['USER']}",
            "--default-character-set=utf8mb4"]


def our_backup(kind: str, recipient: str) -> dict:
    """The default path, as the console and ``dbs_backup`` take it: sealed, verified, stored on the default target."""
    from dbs_admin import create_backup

    result = create_backup(kind=kind, recipients=[recipient], label="bench")
    return {"size": result.size, "rows": result.manifest["rows"], "path": str(result.path)}


def our_restore(source: str, identity, media: str) -> dict:
    from django.conf import settings

    from dbs_admin import restore_backup

    settings.MEDIA_ROOT = media
    result = restore_backup(source, identity=identity, database=SCRATCH)
    return {"rows": sum(result.rows.values()), "files": result.files}


# --- scratch database -----------------------------------------------------------------------------------

def scratch_settings(default: dict, var: Path) -> dict:
    cfg = dict(default)
    if cfg["ENGINE"].endswith("sqlite3"):
        cfg["NAME"] = str(var / "bench-scratch.sqlite3")
    else:
        cfg["NAME"] = f"{default['NAME']}_scratch"
    cfg.pop("TEST", None)
    return cfg


def fresh_scratch() -> None:
    """An empty, migrated scratch database (not timed)."""
    from django.core.management import call_command
    from django.db import connections

    conn = connections[SCRATCH]
    if conn.vendor == "sqlite":
        conn.close()
        Path(conn.settings_dict["NAME"]).unlink(missing_ok=True)
    else:
        empty_scratch_db()
    call_command("migrate", database=SCRATCH, verbosity=0)


def empty_scratch_db() -> None:
    from django.db import connections

    conn = connections[SCRATCH]
    conn.close()
    name = connections["default"].ops.quote_name(conn.settings_dict["NAME"])
    with connections["default"].cursor() as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}" + (" CHARACTER SET utf8mb4" if conn.vendor == "mysql" else ""))


def one_round(work: Path, identity, vendor: str, skip_native: bool) -> dict[str, dict]:
    """Every operation once, each floor just before ours, each from a clean start (not timed)."""
    for leftover in ("floor-media", "media-logical", "media-native"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    for leftover in ("floor.sqlite3", "floor-restored.sqlite3", "floor.dump", "floor.sql.zst", "floor.sql",
                     "media.tar"):
        (work / leftover).unlink(missing_ok=True)
    rows = {"floor backup": in_child(floor_backup, str(work))}
    if vendor in ("postgresql", "mysql"):
        empty_scratch_db()
    if vendor == "mysql":  # the restore floor reads the plain dump: `mariadb db < dump`
        subprocess.run(["zstd", "-q", "-d", "-f", str(work / "floor.sql.zst"), "-o", str(work / "floor.sql")],
                       check=True)
    rows["floor restore"] = in_child(floor_restore, str(work))
    rows["logical backup"] = in_child(our_backup, "logical", identity.recipient)
    fresh_scratch()
    rows["logical restore"] = in_child(our_restore, rows["logical backup"]["path"], identity,
                                       str(work / "media-logical"))
    if not skip_native:
        rows["native backup"] = in_child(our_backup, "native", identity.recipient)
        fresh_scratch()
        rows["native restore"] = in_child(our_restore, rows["native backup"]["path"], identity,
                                          str(work / "media-native"))
    return rows


def summarise(runs: list[dict]) -> dict:
    """The median time (noise on a shared machine is one-sided: it only adds) and the worst peak RSS."""
    out = dict(runs[0])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["rss_mib"] = max(r["rss_mib"] for r in runs)
    return out


def seed_reference_site(posts: int, images: int, *, reuse: bool) -> None:
    """Migrate, then seed the reference workload with ``demo_seed`` (not timed), unless ``reuse`` and a seed of
    that size is there. In a separate process, so the bench's parent (whose memory every forked child starts
    with) stays lean."""
    from django.core.management import call_command

    from blog.models import Post

    call_command("migrate", verbosity=0)
    if not (reuse and Post.objects.count() == posts):
        print(f"seeding {posts} posts and {images} images (not timed)...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "demo_seed", "--posts", str(posts),
                        "--images", str(images), "--flush", "--no-history"], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="keep an existing seed of the same size")
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything; medians are reported")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage breakdown and start-up")
    args = parser.parse_args()

    import django
    from django.conf import settings

    var = Path(os.environ.get("DBS_VAR_DIR", ROOT / "var"))
    settings.DATABASES[SCRATCH] = scratch_settings(settings.DATABASES["default"], var)
    django.setup()
    from django.db import connections

    from dbs_admin.sealed import Argon2Params, generate_identity
    from dbs_admin.targets import get_target

    if connections["default"].vendor == "mysql":
        s = connections["default"].settings_dict
        if s.get("PASSWORD"):
            os.environ["MYSQL_PWD"] = str(s["PASSWORD"])  # the clients' environment, never their command line
        subprocess.run(["mariadb", *mysql_args(s), "-e",
                        f"CREATE DATABASE IF NOT EXISTS `{s['NAME']}` CHARACTER SET utf8mb4"], check=True)
    if connections["default"].vendor == "postgresql":
        import psycopg

        s = connections["default"].settings_dict
        with psycopg.connect(host=s["HOST"], port=s["PORT"] or 5432, user=s["USER"], dbname="postgres",
                             autocommit=True) as pg:
            if not pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s["NAME"],)).fetchone():
                pg.execute(f'CREATE DATABASE "{s["NAME"]}"')
    seed_reference_site(args.posts, args.images, reuse=args.reuse)
    work = var / "bench-backup"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Forked children inherit it; saved (with a cheap Argon2 cost: no key unlocking is measured) for the
    # whole-command restore of the stage breakdown.
    identity_file = var / "bench-identity.txt"
    identity_file.unlink(missing_ok=True)
    identity = generate_identity(identity_file, IDENTITY_PASSPHRASE, argon2=Argon2Params(1, 1024, 1), allow_weak=True)
    # Our code is imported here, before forking, as Django is: start-up is excluded on both sides.
    import dbs_admin.backups.create  # noqa: F401
    import dbs_admin.backups.restore  # noqa: F401
    vendor = connections["default"].vendor
    store = get_target(None)

    load_start = os.getloadavg()[0]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"engine {vendor}; {args.posts} posts, {args.images} images; key: X25519 recipient (no Argon2 measured); "
          f"parent RSS at fork (Django set up, shared by every child): {baseline:.0f} MiB; "
          f"median of {args.rounds} rounds, floor and ours interleaved in each")
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for name, r in one_round(work, identity, vendor, args.skip_native).items():
            runs.setdefault(name, []).append(r)
            if "path" in r:
                store.delete(Path(r["path"]).name)
    rows = {name: summarise(rs) for name, rs in runs.items()}
    floors = {"backup": rows["floor backup"]["seconds"], "restore": rows["floor restore"]["seconds"]}
    targets = {"native backup": 4, "logical backup": 8, "logical restore": 10}
    if vendor == "mysql":
        targets.update({"native backup": 1.3, "logical restore": 3})
    if vendor == "postgresql":  # issue 22: the dump is the floor, the sealing must overlap it
        targets.update({"native backup": 1.2, "logical restore": 2})
    print(f"{'operation':<16} {'seconds':>8} {'size MiB':>9} {'peak RSS MiB':>13} {'x floor':>8} {'target':>7}  "
          "each round (s)")
    for name, r in rows.items():
        floor = floors["backup" if "backup" in name else "restore"]
        ratio = r["seconds"] / floor if not name.startswith("floor") else 1.0
        size = f"{r['size'] / 2**20:9.1f}" if "size" in r else f"{'':>9}"
        target = f"<= {targets[name]}x" if name in targets else ""
        each = " ".join(f"{x['seconds']:.2f}" for x in runs[name])
        print(f"{name:<16} {r['seconds']:8.2f} {size} {r['rss_mib']:13.0f} {ratio:8.2f} {target:>7}  {each}")
    assert rows["logical restore"]["rows"] == rows["logical backup"]["rows"], "restored row count differs"
    shutil.rmtree(work, ignore_errors=True)
    from dbs_admin.models import Backup

    Backup.objects.filter(label="bench").delete()
    if not args.no_stages:
        rows["identity"] = identity.recipient
        print_stages(rows, work, args.skip_native, identity_file, var)
    identity_file.unlink(missing_ok=True)
    print(f"load average: {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"({os.cpu_count()} cpus; trust the ratios over the seconds on a shared machine)")


def print_stages(rows: dict, work: Path, skip_native: bool, identity_file: Path, var: Path) -> None:
    """Each stage of the sealed path alone (bench/stages.py), next to the pipelined run, and start-up."""
    sys.path.insert(0, str(ROOT / "bench"))
    import stages

    work.mkdir(parents=True, exist_ok=True)
    for kind in ("logical",) if skip_native else ("logical", "native"):
        parts = in_child(stages.breakdown, kind, work)
        parts.pop("rss_mib", None)
        parts.pop("seconds", None)
        parts.pop("cpu", None)  # the child's CPU seconds (in_child), not a stage: it used to be summed as one
        sizes = {k: parts.pop(k) for k in ("payload MiB", "compressed MiB")}
        total = sum(v for k, v in parts.items() if not k.startswith("  "))
        ours = rows[f"{kind} backup"]["seconds"]
        print(f"\n{kind} backup, stage by stage, each alone (payload {sizes['payload MiB']:.1f} MiB, "
              f"compressed {sizes['compressed MiB']:.1f} MiB); sum {total:.2f} s, pipelined {ours:.2f} s:")
        for name, secs in parts.items():
            print(f"  {name:<26} {secs:7.2f} s {100 * secs / total:5.0f} %")
    start = stages.startup()
    bare = start["python -c pass"]
    print("\nstart-up (median of 3): " + ", ".join(f"{k} {v:.2f} s" for k, v in start.items())
          + f"; dbs_backup --help minus python: {start['dbs_backup --help'] - bare:.2f} s (goal <= 0.3 s)")
    steps = stages.startup_steps()
    print("start-up of dbs_backup step by step (median of 3; each step pays for the modules it imports first):")
    for name, secs in steps.items():
        print(f"  {name:<66} {secs:6.3f} s")
    from django.db import connections

    if connections["default"].vendor == "sqlite":
        # The table's figures exclude start-up, and the bench's parent had imported the capture and the sealed
        # writer before forking: a real run pays for both, and for its exit. So the commands are run whole.
        kinds = ("logical",) if skip_native else ("logical", "native")
        whole = stages.whole_backups(rows["identity"], work, kinds, keep="logical")
        whole["restore"] = stages.whole_restores(whole.pop("kept"), identity_file, IDENTITY_PASSPHRASE,
                                                 var / "bench-whole-restore")
        for name, goal in (("logical backup", 1.0), ("native backup", 0.8), ("logical restore", 1.5)):
            if name not in rows:
                continue
            kind = name.split()[0]
            if "backup" in name:
                secs, how = whole[kind], f"`manage.py dbs_backup --kind {kind} --output F` run whole"
            else:
                secs, how = whole["restore"], ("`manage.py dbs_restore F --identity I` of the logical backup run "
                                               "whole, into a freshly migrated database")
            print(f"SQLite {name}: {secs:.2f} s, {how} ({rows[name]['seconds']:.2f} s in the process) "
                  f"(goal <= {goal} s){'' if secs <= goal else ' MISSED'}")
    shutil.rmtree(work, ignore_errors=True)
    from dbs_admin.models import Backup

    Backup.objects.filter(label="bench").delete()

if __name__ == "__main__":
    main()
