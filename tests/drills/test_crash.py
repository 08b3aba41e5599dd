"""A drill killed mid-way (SIGKILL: no clean-up possible) leaves an orphan the next drill removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from dbs_admin.backups.api import create_backup
from dbs_admin.drills.runner import run_drill
from dbs_admin.drills.scratch import drills_root, scratch_exists, server_scratch_databases
from dbs_admin.models import DrillReport
from tests import services

PASSPHRASE = "crash test passphrase"


database_url = services.shared_database_url


def scratch_in_use() -> bool:
    if connection.vendor != "sqlite":
        return bool(server_scratch_databases())
    return any(p.suffix == ".sqlite3" and p.stat().st_size > 0 for p in drills_root().glob("dbs_drill_*.sqlite3"))


@pytest.mark.django_db(transaction=True)
def test_killed_drill_leaves_an_orphan_that_the_next_drill_removes(seeded, settings):
    var = seeded["tmp"] / "var"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "PRIVATE_ROOT": str(var / "dbs_private")}
    result = create_backup(kind="logical", target="local", passphrase=PASSPHRASE)
    env = {**os.environ, "DATABASE_URL": database_url(), "DBS_VAR_DIR": str(var), "DBS_PASSPHRASE": PASSPHRASE}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "dbs_drill", str(result.path), "--no-mail"], cwd=services.ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not scratch_in_use():
            assert proc.poll() is None, f"dbs_drill ended before its scratch database was used:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no scratch database appeared within 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-drill: the scratch database is being migrated
    finally:
        proc.kill()
        proc.wait(10)
    orphan = DrillReport.objects.get()
    assert orphan.passed is None and scratch_exists(orphan.pk)

    report = run_drill(str(result.path), passphrase=PASSPHRASE)

    assert report.pk > orphan.pk and report.passed, report.error
    assert not scratch_exists(orphan.pk), "the orphaned scratch database is still there"
    orphan.refresh_from_db()
    assert orphan.passed is False and "Interrupted" in orphan.error and f"#{report.pk}" in orphan.error
    assert list(drills_root().iterdir()) == []


@pytest.mark.django_db
def test_cleanup_spares_a_drill_that_is_still_running(drill_env):
    """A live drill (its lock held) is never cleaned up by another, even a newer one."""
    from django.db import connections

    from dbs_admin.drills.scratch import cleanup_orphans, scratch_database

    with scratch_database(5) as scratch:
        with connections[scratch.alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        assert scratch_exists(5)
        assert cleanup_orphans(9) == []
        assert scratch_exists(5)
    assert not scratch_exists(5)
