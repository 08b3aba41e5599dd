"""Backups to repository targets on the real loopback sshd and the real moto S3 server, through the public API.

Two snapshots (the second incremental), each restored exactly; retention and
collection on the remote store; the repository then validates with the key.
"""

from __future__ import annotations

import secrets
import shutil

import pytest

from blog.models import Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.backups.repository import collect_garbage
from dbs_admin.backups.retention import prune
from dbs_admin.sealed.repo import Repository, check_repository
from dbs_admin.targets import get_target
from tests import services

from .conftest import on
from .helpers import build_site, media_contents, table_contents, wipe

PASSPHRASE = "tr0ub4dor & 3 horses"
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


@pytest.fixture(params=["sftp", "storage"])
def remote_repo(request, settings):
    if request.param == "sftp":
        sshd = services.ssh_server()
        folder = sshd.root / f"repo-{secrets.token_hex(4)}"
        entry = {"kind": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
                 "key_filename": str(sshd.key_path), "known_hosts": str(sshd.known_hosts), "path": str(folder),
                 "timeout": 10, "format": "repository"}
        request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    else:
        alias = request.getfixturevalue("s3_storage")()
        entry = {"kind": "storage", "storage": alias, "prefix": "nightly", "format": "repository"}
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {**settings.DBS_ADMIN["TARGETS"], "repo": entry}}
    return request.param


def test_remote_snapshots_restore_exactly_and_survive_retention(media_root, remote_repo):
    build_site("sq_a", posts=40, images=2)
    first = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    state_1, media_1 = table_contents("sq_a"), media_contents(media_root)
    with on("sq_a"):
        post = Post.objects.order_by("pk")[5]
        post.title = "edited on the remote"
        post.save()
    second = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    state_2 = table_contents("sq_a")
    assert second.size < first.size / 4, (first.size, second.size)
    target = get_target("repo")
    assert target.kind == ("sftp" if remote_repo == "sftp" else "storage")
    assert [s.name for s in target.list()] == [second.name, first.name]

    wipe(media_root)
    restore_backup(first.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_1 and media_contents(media_root) == media_1
    restore_backup(second.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_2

    plan = prune("repo", policy={"last": 1})
    assert list(plan.delete) == [first.name]
    collect_garbage(get_target("repo"), passphrase=PASSPHRASE)
    restore_backup(second.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_2
    store = get_target("repo").store
    assert check_repository(store, repo=Repository.open(store, passphrase=PASSPHRASE), read_data=True).ok
