"""What a killed backup or restore leaves behind is removed by the next backup, restore or reaper on that host.

Only folders whose owner process is gone: a live restore's staging folder, or one of another host, is never
touched; and a restore that died while moving files into place gets the files it replaced put back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connections

from dbs_admin import create_backup, restore_backup
from dbs_admin.backups import leftovers
from dbs_admin.backups.sources import private_dir, sweep_leftovers
from dbs_admin.backups.staging import Staging
from dbs_admin.jobs.reaper import reap_lost_jobs

from .helpers import build_site, media_contents, table_contents

PASSPHRASE = "leftovers of the dead"
pytestmark = pytest.mark.usefixtures("backup_settings")


def dead_pid() -> int:
    """The pid of a process that has certainly ended (a real one, reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def owned_by(folder: Path, *, pid: int, host: str | None = None, start: str | None = "1") -> Path:
    folder.mkdir(parents=True)
    (folder / leftovers.OWNER).write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                                     "start": start}))
    return folder


@pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "sq_b"])
def test_a_restore_killed_mid_way_leaves_nothing_after_the_next_restore(media_root, tmp_path):
    build_site("sq_a", posts=50, images=3)
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "b.dbs")
    before_rows, before_files = table_contents("sq_b"), media_contents(media_root)
    for alias in connections:
        connections[alias].close()

    pid = os.fork()
    if pid == 0:  # the restore that will be killed: it stops for good once it has staged a file
        try:
            original = Staging.new_file

            def stage_then_hang(self, root, final):
                if self.files:
                    time.sleep(3600)
                return original(self, root, final)

            Staging.new_file = stage_then_hang
            restore_backup(result.path, passphrase=PASSPHRASE, database="sq_b")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent through a file
            (tmp_path / "child-error").write_text(repr(exc))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    staging = []
    while not any(p.glob("0*") for p in staging) and time.monotonic() < deadline:
        assert not (tmp_path / "child-error").exists(), (tmp_path / "child-error").read_text()
        staging = list(media_root.parent.glob(".dbs-restore-*"))
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert staging and staging[0].exists(), "the restore never staged a file"

    assert sweep_leftovers() == staging
    assert not list(media_root.parent.glob(".dbs-restore-*"))
    assert table_contents("sq_b") == before_rows and media_contents(media_root) == before_files
    restore_backup(result.path, passphrase=PASSPHRASE, database="sq_b")  # and the next restore works
    assert table_contents("sq_b") == table_contents("sq_a")


def test_a_restore_that_died_while_moving_files_gets_the_old_files_put_back(media_root):
    (media_root / "uploads").mkdir()
    live = media_root / "uploads" / "photo.jpg"
    live.write_bytes(b"the original photo")
    folder = owned_by(media_root.parent / f".dbs-restore-{media_root.name}-0123456789ab", pid=dead_pid())
    (folder / "old").mkdir()
    leftovers.journal_move(folder, live, folder / "old" / "000000000")  # what Staging.apply does, then dies
    os.replace(live, folder / "old" / "000000000")
    live.write_bytes(b"a restored photo whose database rows never committed")
    new = media_root / "uploads" / "new.jpg"
    leftovers.journal_move(folder, new, None)
    new.write_bytes(b"a new file of the dead restore")

    assert sweep_leftovers() == [folder]

    assert live.read_bytes() == b"the original photo" and not new.exists() and not folder.exists()


def test_a_restore_that_died_between_journalling_all_its_moves_and_making_them_is_undone_exactly(media_root):
    """Staging.apply journals every move first (one fsync), then moves: a crash half-way through the moves puts
    back what moved and leaves alone what never did (its old file still in place, its new file never made)."""
    (media_root / "uploads").mkdir()
    moved, unmoved = media_root / "uploads" / "a.jpg", media_root / "uploads" / "b.jpg"
    moved.write_bytes(b"the original a")
    unmoved.write_bytes(b"the original b")
    new_moved, new_unmoved = media_root / "uploads" / "c.jpg", media_root / "uploads" / "d.jpg"
    folder = owned_by(media_root.parent / f".dbs-restore-{media_root.name}-0123456789ab", pid=dead_pid())
    (folder / "old").mkdir()
    leftovers.journal_moves(folder, [(moved, folder / "old" / "000000000"), (new_moved, None),
                                     (unmoved, folder / "old" / "000000002"), (new_unmoved, None)])
    os.replace(moved, folder / "old" / "000000000")  # the first two moves happened, then the process died
    moved.write_bytes(b"restored a, never committed")
    new_moved.write_bytes(b"restored c, never committed")

    assert sweep_leftovers() == [folder]

    assert moved.read_bytes() == b"the original a" and unmoved.read_bytes() == b"the original b"
    assert not new_moved.exists() and not new_unmoved.exists() and not folder.exists()


def test_a_committed_restore_keeps_its_files_when_swept(media_root):
    (media_root / "uploads").mkdir()
    live = media_root / "uploads" / "photo.jpg"
    live.write_bytes(b"restored and committed")
    folder = owned_by(media_root.parent / f".dbs-restore-{media_root.name}-0123456789ab", pid=dead_pid())
    (folder / "old").mkdir()
    (folder / "old" / "000000000").write_bytes(b"the version it replaced")
    leftovers.journal_move(folder, live, folder / "old" / "000000000")
    leftovers.mark_committed(folder)

    sweep_leftovers()

    assert live.read_bytes() == b"restored and committed" and not folder.exists()


def test_live_and_foreign_folders_are_left_alone(media_root, settings):
    mine = private_dir("restore")  # this process: alive
    other_host = owned_by(Path(settings.DBS_ADMIN["PRIVATE_ROOT"]) / "create-fedcba987654", pid=dead_pid(),
                          host="another-host.example")
    recent_unowned = Path(settings.DBS_ADMIN["PRIVATE_ROOT"]) / "fetch-000000000000"
    recent_unowned.mkdir()

    assert sweep_leftovers() == []
    assert mine.exists() and other_host.exists() and recent_unowned.exists()


def test_a_reused_pid_is_not_mistaken_for_the_owner(settings):
    """The pid is alive, but it is another process (another start time): the folder is an orphan."""
    folder = owned_by(Path(settings.DBS_ADMIN["PRIVATE_ROOT"]) / "create-0123456789ab", pid=os.getpid(),
                      start="not this process's start")
    assert sweep_leftovers() == [folder]


@pytest.mark.django_db(databases=["default", "sq_a"])
def test_the_next_backup_and_the_reaper_sweep_too(media_root, settings, tmp_path):
    private = Path(settings.DBS_ADMIN["PRIVATE_ROOT"])
    first = owned_by(private / "create-111111111111", pid=dead_pid())
    (first / "dbs-20261207T000000Z-logical.dbs.tmp-abc").write_bytes(b"half a backup")
    build_site("sq_a", posts=2, images=0)
    create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "next.dbs")
    assert not first.exists()

    second = owned_by(private / "native-222222222222", pid=dead_pid())
    reap_lost_jobs()
    assert not second.exists()
