"""Where a backup's time goes: each stage of the sealed path timed alone, and the start-up of a command.

Used by ``bench/backup.py`` (which prints both next to the floors); runs alone too:

    DBS_VAR_DIR=/tmp/var-bench python bench/stages.py            # the database of DATABASE_URL, as seeded

Why stage by stage, one after the other: in a real backup the stages overlap on threads (capture on the
caller's, compression and encryption on the sealer's, parity and hashes on two workers), so their times do
not add up to the wall time and a profile of the pipelined run hides which stage is the bottleneck. Here the
payload is first captured to a file (the real capture code, with ``seal`` replaced by a file sink), then
each later stage runs alone over the previous stage's output, with the parameters the sealed writer uses.
The sum against the pipelined backup's wall time shows how much the overlap wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def startup(rounds: int = 3) -> dict[str, float]:
    """Median wall time of starting Python, a bare Django (contrib apps only), the demo site's ``django.setup()``
    (dbs_admin, Celery, django-celery-beat, the blog), and ``dbs_backup --help``."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings")
    # As a deployed site starts: from cached bytecode (this machine's shells set PYTHONDONTWRITEBYTECODE, which
    # would compile every module of the project from source at each start). The first round writes the cache.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    bare = ("import django; from django.conf import settings; settings.configure(INSTALLED_APPS=["
            + ", ".join(f"'django.contrib.{a}'" for a in ("admin", "auth", "contenttypes", "sessions", "messages",
                                                           "staticfiles"))
            + "], DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}); "
            "django.setup()")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "bare Django setup": [sys.executable, "-c", bare],
        "django.setup()": [sys.executable, "-c", "import django; django.setup()"],
        "dbs_backup --help": [sys.executable, str(ROOT / "manage.py"), "dbs_backup", "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(rounds + 1):
        for name, cmd in commands.items():  # interleaved, like the floors
            started = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
            if round_:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(ts) for name, ts in times.items()}


# A command's start-up, step by step, in one process started as ``manage.py`` starts (each step's time includes
# the modules it is the first to import: Django's ORM is paid by the first app whose models load).
_STARTUP_PROBE = """
import time
t0 = time.perf_counter()
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
from django.apps.config import AppConfig
steps = {}
def step(name, since):
    now = time.perf_counter()
    steps[name] = steps.get(name, 0.0) + now - since
    return now
def group(label):
    if label == "admin":
        return "admin autodiscovery (every admin.py: the console)"
    if label == "django_celery_beat":
        return "django-celery-beat (its time-zone field: ~600 zones)"
    if label == "dbs_admin":
        return "dbs_admin (models, dbs.py, signals, wiring)"
    if label in ("auth", "contenttypes", "sessions", "messages", "staticfiles"):
        return "Django's contrib apps"
    return "other apps (blog, django_htmx)"
def timed(method):
    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            step(group(self.label), started)
    return wrapper
create = AppConfig.create.__func__
def timed_create(cls, entry):
    config = create(cls, entry)
    config.ready = timed(type(config).ready).__get__(config)
    return config
AppConfig.create = classmethod(timed_create)
AppConfig.import_models = timed(AppConfig.import_models)
t = step("django", t0)
from django.conf import settings
settings.INSTALLED_APPS
t = step("the settings (the demo_site package: its Celery app)", t)
import django
before = sum(steps.values())
django.setup()
now = time.perf_counter()
steps["django.setup(), the rest (logging, django.urls, app configs)"] = now - t - (sum(steps.values()) - before)
t = now
from django.core.management import load_command_class
load_command_class("dbs_admin", "dbs_backup").create_parser("manage.py", "dbs_backup")
t = step("dbs_backup: its module and parser (--help ends here)", t)
import dbs_admin.backups.create  # what handle() imports: the capture, the sealed writer (numpy, zstd, ...)
step("dbs_backup: what a real run imports (capture, sealed writer)", t)
print(json.dumps(steps))
"""


def startup_steps(rounds: int = 3) -> dict[str, float]:
    """Median seconds of each step of a command's start-up (``_STARTUP_PROBE``), from cached bytecode."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runs: list[dict[str, float]] = []
    for _ in range(rounds + 1):  # the first writes the bytecode cache
        out = subprocess.run([sys.executable, "-c", _STARTUP_PROBE], check=True, cwd=ROOT, env=env,
                             capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs = runs[1:]
    return {name: statistics.median(r.get(name, 0.0) for r in runs) for name in runs[0]}


def whole_backups(recipient: str, out_dir: Path, kinds: tuple[str, ...], rounds: int = 3,
                  keep: str | None = None) -> dict:
    """Median wall time of ``manage.py dbs_backup --kind K --output F`` run as a user runs it: start-up, imports,
    capture, sealing, verification, the record and the exit, all in (the table's figures exclude the start-up).
    ``keep``: the last backup of that kind is kept, its path under ``"kept"`` (for :func:`whole_restores`)."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    kept = None
    for round_ in range(rounds):
        for kind in kinds:  # interleaved
            out = out_dir / f"whole-{kind}-{time.time_ns()}.dbs"  # names are never reused
            os.sync()
            started = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "manage.py"), "dbs_backup", "--kind", kind, "--recipient",
                            recipient, "--output", str(out), "--label", "bench", "--no-input", "-v0"],
                           check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[kind].append(time.perf_counter() - started)
            if kind == keep and round_ == rounds - 1:
                kept = out
            else:
                out.unlink()
    medians: dict = {kind: statistics.median(ts) for kind, ts in times.items()}
    if keep is not None:
        medians["kept"] = kept
    return medians


def whole_restores(backup: Path, identity_file: Path, passphrase: str, var: Path, rounds: int = 3) -> float:
    """Median wall time of ``manage.py dbs_restore FILE --identity F`` run as a user runs it (start-up, imports,
    reading, loading, the commit, the process's exit), into a freshly migrated SQLite database and an empty
    media folder under ``var`` (made before each round, not timed). The identity file is sealed with a cheap
    Argon2 cost, as the backups' keys are recipients: unlocking a key is not what is measured."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings", DBS_VAR_DIR=str(var),
               DBS_PASSPHRASE=passphrase)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("DATABASE_URL", None)
    database, template = var / "demo.sqlite3", var / "migrated.sqlite3"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], check=True, cwd=ROOT, env=env)
    shutil.copyfile(database, template)
    times = []
    for round_ in range(rounds + 1):  # the first writes the bytecode cache
        shutil.rmtree(var / "media", ignore_errors=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(template, database)
        os.sync()
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "dbs_restore", str(backup), "--identity",
                        str(identity_file), "--no-input", "-v0"],
                       check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_:
            times.append(time.perf_counter() - started)
    shutil.rmtree(var, ignore_errors=True)
    return statistics.median(times)


class _Report:
    size = 0
    sha256 = None
    key_slots: list = []


def _capture_to(path: Path, kind: str) -> None:
    """The real capture of ``kind`` (snapshot, rows or dump, media), its payload written to ``path``."""
    from django.utils import timezone

    from dbs_admin.backups import create

    def sink(pieces, destination, **_options):
        with open(path, "wb") as f:
            for piece in pieces:
                f.write(piece)
        return _Report()

    now = timezone.now()
    head = {"format": 1, "kind": kind, "engine": "", "label": "bench", "created_at": now, "_created": now,
            "database": "default"}
    sealer = create._seal_logical if kind == "logical" else create._seal_native
    # ``write=`` (the sealers' own hook): their default is bound when create.py is imported, so patching
    # ``create.seal`` would not reach it
    sealer("default", Path(os.devnull), head, {}, create.Reporter(None, None), write=sink)


def _rows_only() -> None:
    """Logical capture without serialising: every row of every carried model read in batches, in the snapshot."""
    from dbs_admin.backups import logical_capture
    from dbs_admin.backups.selection import backed_up_models
    from dbs_admin.conf import dbs_settings

    with logical_capture.snapshot("default"):
        for model in backed_up_models():
            for _rows in logical_capture._rows(model, "default", int(dbs_settings.BATCH_SIZE)):
                pass


def _pieces(path: Path, size: int = MIB):
    with open(path, "rb") as f:
        while piece := f.read(size):
            yield piece


def breakdown(kind: str, work: Path) -> dict[str, float]:
    """Seconds of each stage of a ``kind`` backup, run alone in this order (call in a child process)."""
    from dbs_admin.sealed import compression, writer
    from dbs_admin.sealed.aead import ChunkEncryptor
    from dbs_admin.sealed.blocks import BATCH_BLOCKS, block_parities
    from dbs_admin.sealed.layout import BLOCK_SIZE

    out: dict[str, float] = {}
    raw, packed, sealed, twice = (work / f"stage-{n}" for n in ("payload", "zst", "aes", "twice"))

    def timed(name: str, func) -> None:
        started = time.perf_counter()
        func()
        out[name] = out.get(name, 0.0) + time.perf_counter() - started

    timed("capture + serialise" if kind == "logical" else "capture (dump + media)", lambda: _capture_to(raw, kind))
    if kind == "logical":
        timed("  of which rows read", _rows_only)

    def compress() -> None:
        with open(packed, "wb") as f:
            for piece in compression.compressed(_pieces(raw), writer.DEFAULT_ZSTD_LEVEL, [0],
                                                writer.DEFAULT_ZSTD_THREADS):
                f.write(piece)

    def encrypt() -> None:
        encryptor = ChunkEncryptor(os.urandom(32), b"h" * 32)
        with open(sealed, "wb") as f:
            for chunk in encryptor.encrypt_stream(_pieces(packed)):
                f.write(chunk)

    def hashes() -> None:
        whole = hashlib.sha256()
        for piece in _pieces(sealed, BLOCK_SIZE):
            hashlib.blake2b(piece, digest_size=32).digest()
            whole.update(piece)
            whole.update(piece)  # the file's SHA-256 covers both copies

    def parity() -> None:
        for batch in _pieces(sealed, BATCH_BLOCKS * BLOCK_SIZE):
            block_parities(batch, BLOCK_SIZE)

    def write_twice() -> None:
        with open(twice, "wb") as f:
            for _ in range(2):
                for piece in _pieces(sealed, 4 * MIB):
                    f.write(piece)
            f.flush()
            os.fsync(f.fileno())

    def verify() -> None:
        half = sealed.stat().st_size
        with open(twice, "rb") as f:
            for offset in range(0, half, 4 * MIB):
                n = min(4 * MIB, half - offset)
                a, b = os.pread(f.fileno(), n, offset), os.pread(f.fileno(), n, half + offset)
                zlib.crc32(a)
                assert a == b

    os.sync()
    for name, func in (("compress (zstd)", compress), ("encrypt (AES-GCM)", encrypt),
                       ("hash (BLAKE2b, SHA-256)", hashes), ("parity (RS)", parity),
                       ("write twice + fsync", write_twice), ("verify (read back)", verify)):
        timed(name, func)
    out["payload MiB"] = raw.stat().st_size / MIB
    out["compressed MiB"] = packed.stat().st_size / MIB
    for path in (raw, packed, sealed, twice):
        path.unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    os.environ.setdefault("DBS_LOG_LEVEL", "WARNING")
    import tempfile

    import django

    django.setup()
    print("start-up (median of 3):", {k: round(v, 3) for k, v in startup().items()})
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for kind in ("logical", "native"):
            print(kind, {k: round(v, 3) for k, v in breakdown(kind, Path(tmp)).items()})
