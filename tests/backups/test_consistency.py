"""A backup is one instant: rows written while it streams are not in it, and nothing is torn."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from blog.models import Post
from dbs_admin import create_backup, restore_backup, validate_backup

from .conftest import case, needs_services, on
from .helpers import build_site

pytestmark = pytest.mark.usefixtures("backup_settings")


def _on(a: str, b: str, name: str):
    """Only the databases a case uses are flushed after it (a flush per database costs seconds)."""
    return case(a, b, id=name, marks=pytest.mark.django_db(transaction=True, databases=["default", a, b]))


@pytest.mark.parametrize(("source", "dest"), [_on("sq_a", "sq_b", "sqlite"), _on("pg_a", "pg_b", "postgresql"),
                                              _on("my_a", "my_b", "mariadb")])
def test_writes_during_a_backup_do_not_tear_the_snapshot(source, dest, media_root, identity, settings, request):
    needs_services(request, source)
    build_site(source, posts=60, images=1)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "BATCH_SIZE": 7}
    written = []

    def writer():
        with on(source):
            for i in range(25):
                Post.objects.create(title=f"written during the backup {i}", slug=f"during-{i}")
                written.append(i)
        connections.close_all()

    started = []

    def progress(stage, done, total):
        if stage == "rows" and not started:  # the snapshot is open and rows are streaming
            started.append(1)
            t = threading.Thread(target=writer)
            t.start()
            t.join()  # these commits land in the middle of the stream

    result = create_backup(database=source, recipients=[identity.recipient], progress=progress)

    assert len(written) == 25
    with on(source):
        assert Post.objects.count() == 85
    assert result.manifest["counts"]["blog.Post"] == 60
    check = validate_backup(result.path, identity=identity, decrypt=True)  # trailer counts == manifest counts
    assert check.ok, check.message
    restore_backup(result.path, identity=identity, database=dest)
    with on(dest):
        assert Post.objects.count() == 60 and not Post.objects.filter(slug__startswith="during-").exists()
