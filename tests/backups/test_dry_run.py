"""``--dry-run`` says what a restore would change, row by row and file by file, and writes nothing."""

from __future__ import annotations

import re

import pytest

from blog.models import Post, Tag
from dbs_admin import create_backup, restore_backup

from .conftest import on
from .helpers import build_site, media_contents, table_contents

pytestmark = pytest.mark.usefixtures("backup_settings")


def _plan(result) -> dict[str, str]:
    """``{label: "a added, c changed, r removed, u unchanged"}`` and ``files``, from the plan's lines."""
    out = {}
    for line in result.changes:
        match = re.match(r"(\S+): would (?:replace|write) .*\((.*)\)$", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


@pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])
def test_dry_run_counts_added_changed_removed_and_unchanged(media_root, identity):
    build_site("sq_a", posts=10, images=3)
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="sq_b")
    with on("sq_b"):
        first, second, third = Post.objects.order_by("pk")[:3]
        links = Post.tags.through.objects.count()
        links_of_second = Post.tags.through.objects.filter(post_id=second.pk).count()
        Post.objects.filter(pk=first.pk).update(title="edited since the backup")
        Post.objects.filter(pk=second.pk).delete()  # its tag links go with it
        Post.objects.create(title="written since the backup", slug="new-since")
        third.tags.add(Tag.objects.create(name="fresh", slug="fresh"))
        tags = Tag.objects.count() - 1
    files = sorted(media_root.rglob("*.png"))
    files[0].write_bytes(b"other bytes")
    files[1].unlink()
    before_rows, before_files = table_contents("sq_b"), media_contents(media_root)

    plan = restore_backup(result.path, identity=identity, database="sq_b", dry_run=True)

    got = _plan(plan)
    assert got["blog.Post"] == "1 added, 1 changed, 1 removed, 8 unchanged"
    kept_links = links - links_of_second
    assert got["blog.Post_tags"] == f"{links_of_second} added, 0 changed, 1 removed, {kept_links} unchanged"
    assert links_of_second > 0
    assert got["blog.Tag"] == f"0 added, 0 changed, 1 removed, {tags} unchanged"
    assert got["auth.User"] == "0 added, 0 changed, 0 removed, 1 unchanged"
    assert got["admin.LogEntry"] == "0 added, 0 changed, 0 removed, 6 unchanged"  # content types re-linked
    assert got["files"] == "1 new, 1 different, 1 identical"
    assert table_contents("sq_b") == before_rows and media_contents(media_root) == before_files


@pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "pg_b"])
def test_a_dry_run_across_engines_finds_a_faithful_restore_unchanged(pg, media_root, identity):
    """A SQLite backup compared with the PostgreSQL database it was restored into: nothing would change."""
    build_site("sq_a", posts=8, images=2)
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="pg_b")

    plan = _plan(restore_backup(result.path, identity=identity, database="pg_b", dry_run=True))

    assert plan and all(re.fullmatch(r"0 added, 0 changed, 0 removed, \d+ unchanged", v)
                        for k, v in plan.items() if k != "files"), plan
    assert plan["files"] == "0 new, 0 different, 2 identical"
