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
import os
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
