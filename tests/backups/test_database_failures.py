"""A database that fails during a restore, and a disk that fills during a backup or a restore.

Each ends with one line that says what failed and that nothing was restored (or written), exit code 1,
and the database, the media and the earlier backups exactly as before; ``--traceback`` still shows the
stack for whoever asks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from dbs_admin import create_backup
from dbs_admin.models import Backup

from .helpers import build_site, media_contents, table_contents

PASSPHRASE = "failing databases and full disks"
pytestmark = pytest.mark.usefixtures("backup_settings")


def restore_refused(path: Path, alias: str, tmp_path: Path, *extra: str) -> str:
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")
    with pytest.raises(CommandError) as refused:
        call_command("dbs_restore", str(path), "--database", alias, "--passphrase-file", str(tmp_path / "pw"),
                     "--no-input", *extra, verbosity=0)
    assert refused.value.returncode == 1
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message and "psycopg" not in message
    return message


@pytest.fixture
def short_titles_only(pg):
    """pg_b's schema forbids what the backup holds (a CHECK added after the fact); dropped afterwards."""
    def add() -> None:
        with connections["pg_b"].cursor() as c:
            c.execute("ALTER TABLE blog_post ADD CONSTRAINT short_titles CHECK (length(title) < 3) NOT VALID")

    yield add
    connections["pg_b"].close()
    with connections["pg_b"].cursor() as c:
        c.execute("ALTER TABLE blog_post DROP CONSTRAINT IF EXISTS short_titles")


@pytest.mark.django_db(transaction=True, databases=["default", "pg_a", "pg_b"])
def test_a_check_constraint_the_backup_violates_restores_nothing(short_titles_only, media_root, tmp_path):
    build_site("pg_a", posts=30, images=2)
    result = create_backup(database="pg_a", passphrase=PASSPHRASE, output=tmp_path / "b.dbs")
    build_site("pg_b", posts=5, images=1)
    short_titles_only()
    before, files = table_contents("pg_b"), media_contents(media_root)

    message = restore_refused(result.path, "pg_b", tmp_path)

    assert "short_titles" in message and "nothing was restored" in message
    assert table_contents("pg_b") == before and media_contents(media_root) == files


@pytest.mark.django_db(transaction=True, databases=["default", "pg_a", "pg_b"])
def test_a_connection_killed_during_copy_restores_nothing(pg, media_root, tmp_path):
    build_site("pg_a", posts=1500, images=2)
    result = create_backup(database="pg_a", passphrase=PASSPHRASE, output=tmp_path / "b.dbs")
    build_site("pg_b", posts=5, images=1)
    before, files = table_contents("pg_b"), media_contents(media_root)
    name = connections["pg_b"].settings_dict["NAME"]
    killed = threading.Event()

    def kill_copy() -> None:  # a DBA's pg_terminate_backend, the moment a COPY runs
        import psycopg

        with psycopg.connect(dbname="postgres", host="127.0.0.1", user="postgres", autocommit=True) as admin:
            deadline = time.monotonic() + 60
            while not killed.is_set() and time.monotonic() < deadline:
                rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                     "AND query LIKE 'COPY%%' AND pid <> pg_backend_pid()", [name]).fetchall()
                if rows:
                    killed.set()
                time.sleep(0.002)

    killer = threading.Thread(target=kill_copy, daemon=True)
    killer.start()
    message = restore_refused(result.path, "pg_b", tmp_path)
    killed.set()
    killer.join(10)

    assert "nothing was restored" in message and "connection" in message.lower()
    connections["pg_b"].close()
    assert table_contents("pg_b") == before and media_contents(media_root) == files


@pytest.mark.django_db(transaction=True, databases=["default", "pg_a", "pg_b"])
def test_traceback_still_shows_the_stack_when_asked(short_titles_only, media_root, tmp_path):
    build_site("pg_a", posts=3, images=0)
    result = create_backup(database="pg_a", passphrase=PASSPHRASE, output=tmp_path / "b.dbs")
    short_titles_only()
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")
    with pytest.raises(Exception) as raised:  # call_command re-raises the original error with --traceback
        call_command("dbs_restore", str(result.path), "--database", "pg_b", "--passphrase-file",
                     str(tmp_path / "pw"), "--no-input", "--traceback", verbosity=0)
    assert "short_titles" in str(raised.value)


# --- full disks -----------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real file system that fills up (ENOSPC), not a simulation."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])
def test_a_full_disk_during_a_backup_is_one_line_and_leaves_nothing(small_disk, media_root, tmp_path, settings):
    build_site("sq_a", posts=200, images=80)  # about 4.6 MB of images: more than the disk holds
    earlier = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "earlier.dbs")
    earlier_bytes = earlier.path.read_bytes()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "PRIVATE_ROOT": str(small_disk / "private")}
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")

    with pytest.raises(CommandError) as refused:
        call_command("dbs_backup", "--database", "sq_a", "--passphrase-file", str(tmp_path / "pw"), "--no-input",
                     verbosity=0)

    message = str(refused.value)
    assert refused.value.returncode == 1 and "\n" not in message
    assert "no space left" in message and str(small_disk / "private") in message and "nothing was written" in message
    leftovers = [p for p in small_disk.rglob("*") if p.is_file()]
    assert leftovers == [] and Backup.objects.count() == 1
    assert earlier.path.read_bytes() == earlier_bytes


@pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])
def test_a_full_disk_during_a_restore_restores_nothing(small_disk, tmp_path, settings):
    media = small_disk / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    build_site("sq_a", posts=100, images=40)  # about 2.3 MB of images on the small disk
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "b.dbs")
    filler = small_disk / "filler"  # leave half a megabyte: staging a second copy of the images cannot fit
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 512 * 1024))
    before_rows = table_contents("sq_b")
    files = media_contents(media)

    message = restore_refused(result.path, "sq_b", tmp_path)

    assert "no space left" in message and "nothing was restored" in message
    assert table_contents("sq_b") == before_rows and media_contents(media) == files
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".dbs-restore-")]
