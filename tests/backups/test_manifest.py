"""The manifest a backup carries: what it says is true of the database and files it was made from."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import django
import pytest
from django.db import connections
from django.utils import timezone

import dbs_admin
from dbs_admin import create_backup, read_manifest, restore_backup, validate_backup
from dbs_admin.backups.errors import IntegrityCheckError
from dbs_admin.backups.selection import backed_up_models
from dbs_admin.models import Backup

from .conftest import on
from .helpers import build_site, frames_of, payload_of, reseal, wipe

pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


def _media_hashes(media_root) -> list[list]:
    return sorted(["media", p.relative_to(media_root).as_posix(), p.stat().st_size,
                   hashlib.sha256(p.read_bytes()).hexdigest()] for p in media_root.rglob("*") if p.is_file())


def _applied(alias: str) -> list[list[str]]:
    with connections[alias].cursor() as c:
        c.execute("SELECT app, name FROM django_migrations")
        return sorted([app, name] for app, name in c.fetchall())


# Native reads committed pages through SQLite's backup API: that case commits its rows (transaction=True).
@pytest.mark.parametrize("kind", ["logical", pytest.param("native", marks=pytest.mark.django_db(
    transaction=True, databases=["default", "sq_a", "sq_b"]))])
def test_the_manifest_describes_the_backup_truly(kind, media_root, identity):
    build_site("sq_a", posts=7, images=3)
    before = timezone.now()

    result = create_backup(kind=kind, database="sq_a", recipients=[identity.recipient], label="nightly")

    m = read_manifest(result.path, identity=identity)
    assert m["kind"] == kind and m["engine"] == "sqlite" and m["label"] == "nightly"
    created = datetime.fromisoformat(m["created_at"])
    assert before - timedelta(seconds=1) <= created <= timezone.now()
    with on("sq_a"):
        expected = {model._meta.label: model._base_manager.count() for model in backed_up_models()}
    assert {k: v for k, v in m["counts"].items() if k in expected} == expected and m["counts"]["blog.Post"] == 7
    assert m["rows"] == sum(m["counts"].values())
    assert m["migrations"] == _applied("sq_a") and ["blog", "0001_initial"] in m["migrations"]
    assert m["versions"]["django"] == django.get_version() and m["versions"]["dbs_admin"] == dbs_admin.__version__
    from django.apps import apps

    assert set(m["versions"]["apps"]) == {c.label for c in apps.get_app_configs()}
    assert m["versions"]["apps"]["auth"] == django.get_version()
    # The hash of every file, as the disk has it.
    assert sorted(m["file_sha256"]) == _media_hashes(media_root) and len(m["file_sha256"]) == 3
    if kind == "native":
        assert len(m["dump"]["sha256"]) == 64 and m["dump"]["size"] > 0
    else:
        assert m["missing_files"] == []
    # The console's row keeps the summary, not the (possibly long) file list.
    row = Backup.objects.get(pk=result.backup_id).manifest
    assert "file_sha256" not in row and row["counts"] == m["counts"]


@pytest.mark.parametrize(("kind", "lie", "message"), [
    ("logical", lambda m: m["file_sha256"][0].__setitem__(3, "0" * 64), "list and hashes in its manifest"),
    ("native", lambda m: m["file_sha256"].pop(), "list and hashes in its manifest"),
    ("native", lambda m: m["dump"].__setitem__("sha256", "0" * 64), "dump differs from the hash in its manifest"),
])
def test_a_manifest_that_differs_from_the_contents_is_refused(kind, lie, message, media_root, identity, tmp_path):
    """The manifest's lists and the trailer are written by the same capture: a difference means the file is
    not what it claims, and nothing is restored from it."""
    build_site("sq_a", posts=3, images=2)
    result = create_backup(kind=kind, database="sq_a", recipients=[identity.recipient])
    summary = read_manifest(result.path, identity=identity)
    lie(summary)
    crafted = reseal(frames_of(payload_of(result.path, identity)), summary, tmp_path / "lies.dbs", identity)
    with on("sq_b"):
        from blog.models import Post

        Post.objects.create(title="kept", slug="kept")
    wipe(media_root)

    with pytest.raises(IntegrityCheckError, match=message):
        restore_backup(crafted, identity=identity, database="sq_b")
    assert not any(media_root.iterdir())
    checked = validate_backup(crafted, identity=identity, decrypt=True)

    assert not checked.ok and "manifest" in checked.message
    with on("sq_b"):
        assert list(Post.objects.values_list("slug", flat=True)) == ["kept"]
    assert validate_backup(result.path, identity=identity, decrypt=True).ok
