"""A full logical restore into PostgreSQL loads the rows first and builds the secondary indexes after (as
pg_restore does), so the restored database must end with exactly the indexes it had, and a restore that
fails must leave them untouched too."""

from __future__ import annotations

import pytest
from django.db import connections

from blog.models import Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.backups.errors import RestoreError

from .conftest import on
from .helpers import build_site, fingerprint

pytestmark = [pytest.mark.usefixtures("backup_settings", "pg"),
              pytest.mark.django_db(transaction=True, databases=["default", "pg_a", "pg_b"])]


def _indexes(alias: str) -> list[tuple[str, str, str]]:
    with connections[alias].cursor() as c:
        c.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                  "ORDER BY tablename, indexname")
        return c.fetchall()


def test_a_full_restore_ends_with_every_index_it_had(media_root, identity):
    build_site("pg_a", posts=30, images=2)
    result = create_backup(database="pg_a", recipients=[identity.recipient])
    with on("pg_b"):
        Post.objects.create(title="replaced", slug="replaced")
    before = _indexes("pg_b")
    secondary = [i for i in before if i[0] == "blog_post" and "UNIQUE" not in i[2] and "_pkey" not in i[1]]
    assert secondary  # the case is real: blog_post has indexes the restore sets aside

    restore_backup(result.path, identity=identity, database="pg_b")

    assert _indexes("pg_b") == before
    assert fingerprint("pg_b") == fingerprint("pg_a")


def test_a_failed_restore_leaves_the_indexes_as_they_were(media_root, identity):
    build_site("pg_a", posts=5, images=0)
    result = create_backup(database="pg_a", recipients=[identity.recipient])
    before = _indexes("pg_b")

    with pytest.raises(RestoreError):  # a model the backup does not hold: refused before any row moves
        restore_backup(result.path, identity=identity, database="pg_b", objects=["blog.Post:999999"])
    with connections["pg_b"].cursor() as c:  # a failure inside the load: the whole transaction rolls back
        c.execute("ALTER TABLE blog_post ADD CONSTRAINT h22_no_rows CHECK (id < 0) NOT VALID")
    try:
        with pytest.raises(RestoreError, match="h22_no_rows"):
            restore_backup(result.path, identity=identity, database="pg_b")
    finally:
        with connections["pg_b"].cursor() as c:
            c.execute("ALTER TABLE blog_post DROP CONSTRAINT h22_no_rows")

    assert _indexes("pg_b") == before
