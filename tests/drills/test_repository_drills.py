"""Drills of repository snapshots: the unattended drill identity picks the newest snapshot its key opens,
exports it with that key, and drills it as a file (the report saying what its RTO then measured); a snapshot
sealed with a passphrase only is skipped."""

from __future__ import annotations

import pytest

from blog.models import Post
from dbs_admin.backups.api import create_backup
from dbs_admin.drills.runner import run_drill
from dbs_admin.drills.scratch import drills_root, scratch_exists
from dbs_admin.jobs.tasks import drill_summary
from dbs_admin.models import Backup

PASSPHRASE = "repository passphrase for drills"


@pytest.fixture
def repo(settings, seeded):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"],
        "repo": {"kind": "local", "path": str(seeded["tmp"] / "repo"), "format": "repository"}}}
    return seeded


@pytest.mark.django_db
def test_the_drill_identity_drills_the_newest_snapshot_its_key_opens(repo):
    # The repository is created by its first backup with the passphrase and the configured recipient (the drill
    # identity's): its key slots, recorded on every snapshot's row, say the identity opens it.
    first = create_backup(target="repo", passphrase=PASSPHRASE, recipients=list(repo_recipients()))
    slots = Backup.objects.get(pk=first.backup_id).key_slots
    assert {s["type"] for s in slots} == {"passphrase", "recipient"}
    Post.objects.filter(pk=Post.objects.order_by("pk").first().pk).update(title="edited before the second")
    second = create_backup(target="repo", passphrase=PASSPHRASE)
    report = run_drill(target="repo")  # DRILL_IDENTITY, unattended
    assert report.passed, [(c.name, c.detail) for c in report.checks.all() if not c.passed] or report.error
    assert report.backup_name == second.name
    export = report.checks.get(name="export")
    assert "exported from repository target 'repo'" in export.detail and "upper bound" in export.detail
    # The report says what its RTO measured: each step, and what the export adds to a restore from the repository.
    counted = {c.name: c.seconds for c in report.checks.all() if c.name in ("export", "schema", "restore")}
    assert report.restore_seconds == pytest.approx(sum(counted.values()), abs=0.01)
    summary = drill_summary(report)
    assert f"export {counted['export']:.1f} s + schema" in summary and "upper bound" in summary
    assert not scratch_exists(report.pk)
    assert not any(p.name.startswith(f"dbs_drill_{report.pk}.") for p in drills_root().iterdir())


@pytest.mark.django_db
def test_a_repository_the_drill_key_cannot_open_is_said_so_not_tried(repo):
    create_backup(target="repo", passphrase=PASSPHRASE)  # a passphrase slot only
    assert {s["type"] for s in Backup.objects.get().key_slots} == {"passphrase"}
    report = run_drill(target="repo")
    assert report.passed is False and "sealed to the drill's key" in report.error


def repo_recipients():
    from dbs_admin.conf import dbs_settings

    return dbs_settings.RECIPIENTS
