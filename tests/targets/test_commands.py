"""dbs_list and dbs_prune through call_command (and one real process for the exit status)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dbs_admin.models import Backup
from dbs_admin.targets.configured import build_target
from dbs_admin.targets.local import LocalTarget
from dbs_admin.targets.naming import backup_file_name
from tests.services import ROOT

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


_NOW = timezone.now()


def recent(days: int, label: str = "") -> str:
    """A backup name ``days`` before this test run (fixed, so names compare equal)."""
    return backup_file_name(_NOW - timedelta(days=days, minutes=1), "logical", label)


@pytest.fixture
def configured(settings, tmp_path, sftp_entry):
    settings.DBS_ADMIN = {
        **settings.DBS_ADMIN,
        "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "store")}, "offsite": sftp_entry},
        "DEFAULT_TARGET": "local",
        "RETENTION": {"*": {"last": 2}, "offsite": {"last": 1}},
    }
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(2048))
    local = LocalTarget("local", tmp_path / "store")
    offsite = build_target("offsite", sftp_entry)
    return local, offsite, payload


def test_dbs_list_shows_every_target_with_known_verified_state(configured):
    local, offsite, payload = configured
    for days in (0, 1, 2):
        local.put(payload, recent(days, "nightly"))
    offsite.put(payload, recent(0, "nightly"))
    Backup.objects.create(name=recent(1, "nightly"), status=Backup.Status.HEALED)

    out, _ = run("dbs_list")
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("local") and recent(0, "nightly") in lines[0] and "unknown" in lines[0]
    assert "healed" in lines[1] and "2.0 KiB" in lines[1]
    assert lines[3].startswith("offsite")

    rows = json.loads(run("dbs_list", "--target", "local", "--json")[0])
    assert [r["name"] for r in rows] == [recent(d, "nightly") for d in (0, 1, 2)]
    assert rows[1] | {"created_at": None, "sha256": None} == {
        "target": "local", "name": recent(1, "nightly"), "size": 2048, "created_at": None, "kind": "logical",
        "label": "nightly", "sha256": None, "status": "healed",
    }
    assert len(rows[0]["sha256"]) == 64


def test_dbs_list_empty_and_unknown_target(configured):
    assert run("dbs_list", "--target", "local")[0].strip() == "No backups."
    with pytest.raises(CommandError, match="no backup target named 'nope'") as info:
        run("dbs_list", "--target", "nope")
    assert info.value.returncode == 1 and "\n" not in str(info.value)


def test_dbs_list_reports_an_unreachable_target_after_listing_the_others(configured, settings, sftp_entry):
    local, _, payload = configured
    local.put(payload, recent(0))
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "offsite": {**sftp_entry, "port": 1, "retries": 0}}}
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="target 'offsite'.*unreachable") as info:
        call_command("dbs_list", stdout=out, stderr=err)
    assert recent(0) in out.getvalue() and info.value.returncode == 1


def test_dbs_prune_dry_run_then_for_real_on_local_and_sftp(configured, sftp_dir):
    local, offsite, payload = configured
    for days in range(4):
        local.put(payload, recent(days))
        offsite.put(payload, recent(days))
    before_local, before_remote = sorted(os.listdir(local.path)), sorted(os.listdir(sftp_dir))

    out, _ = run("dbs_prune", "--dry-run")
    assert f"keep    {recent(0)}  (last 2 (#1))" in out
    assert f"delete  {recent(3)}  (outside every retention rule)" in out
    assert "target 'local': kept 2, would delete 2 (dry run: nothing was deleted)" in out
    assert "target 'offsite': kept 1, would delete 3 (dry run: nothing was deleted)" in out
    assert sorted(os.listdir(local.path)) == before_local and sorted(os.listdir(sftp_dir)) == before_remote

    out, _ = run("dbs_prune", "--target", "offsite")
    assert "target 'offsite': kept 1, deleted 3" in out and "local" not in out
    assert sorted(os.listdir(sftp_dir)) == [recent(0), f"{recent(0)}.sha256"]
    assert sorted(os.listdir(local.path)) == before_local

    run("dbs_prune")
    kept = [recent(0), recent(1)]
    assert sorted(os.listdir(local.path)) == sorted(kept + [f"{n}.sha256" for n in kept])


def test_dbs_prune_failure_is_one_line(configured, settings, sftp_entry):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RETENTION": {"*": {"last": 0}}}
    with pytest.raises(CommandError, match="keeps nothing") as info:
        run("dbs_prune", "--target", "local")
    assert info.value.returncode == 1 and "\n" not in str(info.value)
    local, _, payload = configured
    for days in range(3):
        local.put(payload, recent(days))
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RETENTION": {"*": {"last": 1}}, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "offsite": {**sftp_entry, "known_hosts": "/nonexistent/known_hosts"}}}
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="known_hosts file /nonexistent/known_hosts does not exist"):
        call_command("dbs_prune", stdout=out, stderr=err)
    # The broken offsite target did not stop the local one from being pruned.
    assert "target 'local': kept 1, deleted 2" in out.getvalue()
    assert sorted(os.listdir(local.path)) == [recent(0), f"{recent(0)}.sha256"]


def test_exit_status_and_message_of_a_real_process(tmp_path):
    env = {**os.environ, "DBS_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "dbs_prune", "--target", "nope", "--dry-run"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: no backup target named 'nope' in DBS_ADMIN[\"TARGETS\"] (configured: local)"
    ]
