"""Backups to a repository target (``"format": "repository"``): incremental snapshots that restore exactly.

Real SQLite databases and media files; the repository in a real folder.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from blog.models import Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.sealed import WrongPassphraseError
from dbs_admin.sealed.repo import DirectoryStore, Repository, check_repository
from dbs_admin.targets import get_target

from .conftest import on
from .helpers import build_site, media_contents, table_contents, wipe

PASSPHRASE = "tr0ub4dor & 3 horses"
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


@pytest.fixture
def repo_target(settings, tmp_path):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "repo": {"kind": "local", "path": str(tmp_path / "repo"),
                                                  "format": "repository"}}}
    return tmp_path / "repo"


def test_snapshots_cost_what_changed_and_each_restores_exactly(media_root, repo_target):
    build_site("sq_a", posts=60, images=3)
    first = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    state_1, media_1 = table_contents("sq_a"), media_contents(media_root)
    with on("sq_a"):
        post = Post.objects.order_by("pk")[10]
        post.title = "edited after the first snapshot"
        post.save()
        Post.objects.order_by("pk").last().delete()
    second = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo", label="after edit")
    third = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    state_2 = table_contents("sq_a")
    assert second.size < first.size / 4, (first.size, second.size)
    assert third.size < 20_000, "nothing changed: the snapshot record alone (the issue's goal: 20 KB)"

    listed = get_target("repo").list()
    assert [s.name for s in listed] == [third.name, second.name, first.name]
    assert [s.size for s in listed] == [third.size, second.size, first.size]

    wipe(media_root)
    restore_backup(first.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_1 and media_contents(media_root) == media_1
    restore_backup(second.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_2
    store = DirectoryStore(repo_target)
    assert check_repository(store, repo=Repository.open(store, passphrase=PASSPHRASE), read_data=True).ok


def test_wrong_passphrase_is_refused_with_nothing_written(media_root, repo_target):
    build_site("sq_a", posts=10, images=1)
    build_site("sq_b", posts=4, images=0)
    snap = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    before = table_contents("sq_b")
    with pytest.raises(WrongPassphraseError):
        restore_backup(snap.name, target="repo", database="sq_b", passphrase="not it")
    assert table_contents("sq_b") == before
    with pytest.raises(Exception, match="passphrase"):
        create_backup(database="sq_a", passphrase="not it", target="repo")
    assert len(get_target("repo").list()) == 1


def test_commands_list_and_restore_the_latest_snapshot(media_root, repo_target, monkeypatch):
    build_site("sq_a", posts=12, images=1)
    monkeypatch.setenv("DBS_PASSPHRASE", PASSPHRASE)
    call_command("dbs_backup", "--database", "sq_a", "--target", "repo", "--no-input", verbosity=0)
    call_command("dbs_backup", "--database", "sq_a", "--target", "repo", "--no-input", verbosity=0)
    out = io.StringIO()
    call_command("dbs_list", "--target", "repo", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert len(rows) == 2 and rows[0]["size"] < rows[1]["size"]
    assert rows[1]["total"] == rows[1]["size"] and rows[0]["total"] == rows[0]["size"] + rows[1]["size"]
    out = io.StringIO()
    call_command("dbs_list", "--target", "repo", stdout=out)
    assert out.getvalue().count("added, total") == 2
    call_command("dbs_restore", "--latest", "--target", "repo", "--database", "sq_b", "--no-input", verbosity=0)
    assert table_contents("sq_b") == table_contents("sq_a")
    with pytest.raises(CommandError, match="no snapshot named"):
        call_command("dbs_restore", "dbs-20000101T000000000000Z-logical.dbs", "--target", "repo",
                     "--database", "sq_b", "--no-input")


def test_a_snapshot_exports_to_a_standalone_sealed_file(media_root, repo_target, tmp_path):
    from dbs_admin.backups.repository import export_snapshot
    from dbs_admin.sealed import verify

    build_site("sq_a", posts=20, images=2)
    create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    with on("sq_a"):
        Post.objects.filter(pk=Post.objects.order_by("pk").first().pk).update(title="changed")
    snap = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    expected, files = table_contents("sq_a"), media_contents(media_root)
    out = tmp_path / "export.dbs"
    export_snapshot(get_target("repo"), snap.name, out, passphrase=PASSPHRASE,
                    keys={"passphrase": "another", "argon2": None, "allow_weak_argon2": True})
    assert verify(out, passphrase="another").ok
    wipe(media_root)
    restore_backup(out, database="sq_b", passphrase="another")
    assert table_contents("sq_b") == expected and media_contents(media_root) == files


def test_retention_forgets_snapshots_and_collection_keeps_the_rest_restorable(media_root, repo_target, settings):


    from dbs_admin.backups.repository import collect_garbage
    from dbs_admin.backups.retention import prune
    from dbs_admin.models import Backup

    build_site("sq_a", posts=30, images=2)
    states = []
    for i in range(4):
        with on("sq_a"):
            Post.objects.filter(pk=Post.objects.order_by("pk")[i].pk).update(title=f"edit {i}")
        snap = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
        states.append((snap.name, table_contents("sq_a")))
    # The plan works on the snapshot names (their UTC stamps): keep the last 2.
    plan = prune("repo", policy={"last": 2})
    assert set(plan.delete) == {states[0][0], states[1][0]}
    assert [s.name for s in get_target("repo").list()] == [states[3][0], states[2][0]]
    assert not Backup.objects.filter(name__in=plan.delete).exists()
    before = get_target("repo").total_size()
    report = collect_garbage(get_target("repo"), passphrase=PASSPHRASE)
    assert get_target("repo").total_size() <= before and report.live_chunks > 0
    for name, expected in states[2:]:
        restore_backup(name, target="repo", database="sq_b", passphrase=PASSPHRASE)
        assert table_contents("sq_b") == expected


def test_a_snapshot_with_a_lost_pack_is_refused_with_nothing_written(media_root, repo_target):
    build_site("sq_a", posts=15, images=1)
    build_site("sq_b", posts=3, images=0)
    snap = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    before = table_contents("sq_b")
    pack = sorted((repo_target / "packs").iterdir())[0]
    data = bytearray(pack.read_bytes())
    for i in range(len(data)):  # every byte of both copies: beyond any repair
        data[i] ^= 0x3C
    pack.write_bytes(bytes(data))
    with pytest.raises(Exception, match="packs/") as caught:
        restore_backup(snap.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert "packs/" in str(caught.value)
    assert table_contents("sq_b") == before


@pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "sq_b"])  # a native restore swaps files
def test_native_backups_are_snapshots_too(media_root, repo_target):
    build_site("sq_a", posts=25, images=1)
    first = create_backup(kind="native", database="sq_a", passphrase=PASSPHRASE, target="repo")
    second = create_backup(kind="native", database="sq_a", passphrase=PASSPHRASE, target="repo")
    assert second.size < first.size / 2, "an unchanged SQLite file deduplicates"
    expected = table_contents("sq_a")
    restore_backup(second.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == expected
