"""MariaDB's own rules: what it would store differently, what it cannot hold, and what backups and restores do.

Every case runs on the real server (``my_a`` a source, ``my_b`` a target) beside the SQLite and PostgreSQL
aliases, so a refusal is proven to change nothing, and what is carried is compared row for row.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time

import pytest
from django.db import connections

from blog.models import Post, Tag
from dbs_admin import create_backup, restore_backup, validate_backup
from dbs_admin.backups.errors import BackupError, RestoreError, ToolMissingError

from .conftest import ALL, MYSQL_DRIVER, needs_services, on
from .helpers import build_site, fingerprint, media_contents, table_contents

if not MYSQL_DRIVER:
    pytest.skip("the MariaDB driver is not installed (see tests/backups/conftest.py)", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("backup_settings", "my")

EMOJI = "Backups that heal 🚀🦄 (𝔘𝔫𝔦𝔠𝔬𝔡𝔢 too)"


def _scratch_databases() -> list[str]:
    with connections["my_a"].cursor() as cursor:
        cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'dbs\\_restore\\_%'")
        return [name for (name,) in cursor.fetchall()]


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(("source", "dest"), [("sq_a", "my_b"), ("my_a", "my_b"), ("my_a", "pg_b")])
def test_four_byte_utf8_round_trips(source, dest, media_root, identity, request):
    needs_services(request, source, dest)
    build_site(source, posts=3, images=0)
    with on(source):
        Post.objects.create(title=EMOJI, slug="emoji", content_md="# 🎉\n\nparty 🥳")
        Tag.objects.create(name="🦄", slug="unicorn")

    result = create_backup(database=source, recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database=dest)

    with on(dest):
        assert Post.objects.get(slug="emoji").title == EMOJI
        assert Post.objects.get(slug="emoji").content_html == "<h1>🎉</h1>\n<p>party 🥳</p>"
        assert Tag.objects.get(slug="unicorn").name == "🦄"
    assert fingerprint(dest) == fingerprint(source)


@pytest.mark.django_db(databases=["default", "my_a", "sq_b"])
def test_a_site_connected_in_3_byte_utf8_still_backs_up_emoji_exactly(media_root, identity):
    """Django's default connection charset is utf8 (MariaDB's utf8mb3), in which the server sends an emoji as '?':
    the backup reads in utf8mb4 whatever the site's setting, and leaves the connection as it found it."""
    build_site("my_a", posts=2, images=0)
    with on("my_a"):
        Post.objects.create(title=EMOJI, slug="emoji")
    raw = connections["my_a"].connection
    raw.set_character_set("utf8mb3")
    with connections["my_a"].cursor() as cursor:  # what a plain read in that charset would carry
        cursor.execute("SELECT title FROM blog_post WHERE slug = 'emoji'")
        assert cursor.fetchone()[0] != EMOJI

    result = create_backup(database="my_a", recipients=[identity.recipient])

    assert raw.character_set_name() == "utf8mb3"
    restore_backup(result.path, identity=identity, database="sq_b")
    with on("sq_b"):
        assert Post.objects.get(slug="emoji").title == EMOJI


@pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "my_b"])
def test_4_byte_text_into_a_utf8mb3_table_is_refused_and_changes_nothing(media_root, identity):
    build_site("sq_a", posts=3, images=0)
    with on("sq_a"):
        Post.objects.create(title=EMOJI, slug="emoji")
    with on("my_b"):
        Post.objects.create(title="kept", slug="kept")
    before = fingerprint("my_b")
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    with connections["my_b"].cursor() as cursor:
        cursor.execute("ALTER TABLE blog_post CONVERT TO CHARACTER SET utf8mb3")
    try:
        with pytest.raises(RestoreError, match=r"4-byte UTF-8 .* needs the utf8mb4 character set.*nothing was"):
            restore_backup(result.path, identity=identity, database="my_b")
        assert fingerprint("my_b") == before
    finally:
        with connections["my_b"].cursor() as cursor:
            cursor.execute("ALTER TABLE blog_post CONVERT TO CHARACTER SET utf8mb4")


@pytest.mark.django_db(databases=["default", "sq_a", "my_b"])
def test_keys_equal_under_a_case_insensitive_collation_are_refused_and_change_nothing(media_root, identity):
    """Two tags SQLite keeps apart ("Zebra", "zebra") are one key in MariaDB's default collation."""
    build_site("sq_a", posts=3, images=0)
    with on("sq_a"):
        Tag.objects.create(name="Zebra", slug="zebra-upper")
        Tag.objects.create(name="zebra", slug="zebra-lower")
    with on("my_b"):
        Post.objects.create(title="kept", slug="kept")
    before = fingerprint("my_b")
    result = create_backup(database="sq_a", recipients=[identity.recipient])

    with pytest.raises(RestoreError) as refused:
        restore_backup(result.path, identity=identity, database="my_b")

    message = str(refused.value)
    assert "\n" not in message and "differ only in letter case" in message and "nothing was restored" in message
    assert "zebra" in message.lower() and "utf8mb4_bin" in message
    assert fingerprint("my_b") == before


@pytest.mark.django_db(databases=["default", "sq_a", "my_b"])
@pytest.mark.parametrize("broken", ["a key to a missing row", "a value too long for its column"])
def test_a_restore_that_fails_half_way_leaves_database_and_media_unchanged(broken, media_root, identity):
    """The backup (of SQLite, which enforces neither) violates a constraint of the MariaDB schema: a dangling
    foreign key, found by the restore's own check after every row is in; a too-long title, refused by the
    server in the middle of the load. Either way the rows already loaded and the files are rolled back."""
    build_site("sq_a", posts=30, images=2)
    last = max(table_contents("sq_a")["blog.Post"])[0]
    with connections["sq_a"].cursor() as cursor:  # SQLite checks foreign keys at commit, which never comes here
        if broken == "a key to a missing row":
            cursor.execute("UPDATE blog_post SET category_id = 999999 WHERE id = %s", [last])
        else:
            cursor.execute("UPDATE blog_post SET title = %s WHERE id = %s", ["x" * 300, last])
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    with connections["sq_a"].cursor() as cursor:  # the test's own end checks every key of sq_a
        cursor.execute("UPDATE blog_post SET category_id = NULL WHERE id = %s", [last])
    with on("my_b"):
        Post.objects.create(title="kept", slug="kept")
        Tag.objects.create(name="kept", slug="kept")
    for path in media_root.rglob("*.*"):
        path.write_bytes(b"today's version of " + path.name.encode())
    before, files = fingerprint("my_b"), media_contents(media_root)

    with pytest.raises(RestoreError, match="nothing was restored") as refused:
        restore_backup(result.path, identity=identity, database="my_b")

    if broken == "a key to a missing row":
        assert "foreign key" in str(refused.value) and "999999" in str(refused.value)
    else:
        assert "Data too long" in str(refused.value)
    assert fingerprint("my_b") == before
    assert media_contents(media_root) == files


@pytest.mark.django_db(databases=["default", "sq_a", "my_b"])
def test_an_id_of_zero_stays_zero(media_root, identity):
    """MariaDB turns an explicit 0 in an AUTO_INCREMENT column into a new id unless told not to."""
    build_site("sq_a", posts=2, images=0)
    with on("sq_a"):
        Tag.objects.create(id=0, name="zero", slug="zero")
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="my_b")
    assert fingerprint("my_b") == fingerprint("sq_a")
    with on("my_b"):
        assert Tag.objects.get(slug="zero").pk == 0
        top = max(Tag.objects.values_list("pk", flat=True))
        assert Tag.objects.create(name="after", slug="after").pk > top


@pytest.mark.django_db(databases=["default", "my_a"])
def test_zero_dates_are_refused_by_a_logical_backup(media_root, identity, tmp_path):
    build_site("my_a", posts=3, images=0)
    with connections["my_a"].cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = ''")
        try:
            cursor.execute("UPDATE blog_post SET created_at = '0000-00-00 00:00:00' ORDER BY id LIMIT 1")
        finally:
            cursor.execute("SET SESSION sql_mode = @@GLOBAL.sql_mode")

    with pytest.raises(BackupError, match=r"zero dates \(0000-00-00\) in blog.Post.created_at \(1 row\(s\)\)"):
        create_backup(database="my_a", recipients=[identity.recipient], output=tmp_path / "z.dbs")
    assert not (tmp_path / "z.dbs").exists()


@pytest.mark.django_db(transaction=True, databases=["default", "my_a", "my_b"])
def test_tables_that_cannot_roll_back_are_refused(media_root, identity, tmp_path):
    build_site("my_a", posts=3, images=1)
    result = create_backup(database="my_a", recipients=[identity.recipient])
    before = fingerprint("my_b")
    try:
        for alias in ("my_a", "my_b"):
            with connections[alias].cursor() as cursor:
                cursor.execute("ALTER TABLE blog_attachment ENGINE=MyISAM")
        with pytest.raises(BackupError, match=r"blog_attachment \(MyISAM\) use a storage engine without trans"):
            create_backup(database="my_a", recipients=[identity.recipient], output=tmp_path / "m.dbs")
        with pytest.raises(RestoreError, match=r"blog_attachment \(MyISAM\).*ENGINE=InnoDB"):
            restore_backup(result.path, identity=identity, database="my_b")
        assert fingerprint("my_b") == before
    finally:
        for alias in ("my_a", "my_b"):
            with connections[alias].cursor() as cursor:
                cursor.execute("ALTER TABLE blog_attachment ENGINE=InnoDB")


# --- the dry run, partial restores, the safety backup ------------------------------------------------------


@pytest.mark.django_db(databases=["default", "my_a", "my_b"])
def test_a_dry_run_on_mariadb_counts_what_would_change_and_writes_nothing(media_root, identity):
    build_site("my_a", posts=10, images=2)
    result = create_backup(database="my_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="my_b")
    with on("my_b"):
        first, second = Post.objects.order_by("pk")[:2]
        Post.objects.filter(pk=first.pk).update(title="edited since the backup 🚧")
        Post.objects.create(title="written since the backup", slug="new-since")
        Tag.objects.filter(pk=Tag.objects.order_by("pk")[0].pk).delete()
    before, files = fingerprint("my_b"), media_contents(media_root)

    plan = restore_backup(result.path, identity=identity, database="my_b", dry_run=True)

    lines = {line.split(":", 1)[0]: line for line in plan.changes}
    assert "(0 added, 1 changed, 1 removed, 9 unchanged)" in lines["blog.Post"], lines["blog.Post"]
    assert "(1 added, 0 changed, 0 removed," in lines["blog.Tag"], lines["blog.Tag"]
    assert fingerprint("my_b") == before and media_contents(media_root) == files


@pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "my_b"])
def test_a_dry_run_of_a_sqlite_backup_against_its_mariadb_restore_finds_nothing_to_change(media_root, identity):
    build_site("sq_a", posts=8, images=2)
    with on("sq_a"):
        Post.objects.create(title=EMOJI, slug="emoji")
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="my_b")

    plan = restore_backup(result.path, identity=identity, database="my_b", dry_run=True)

    counts = [line for line in plan.changes if "would replace" in line]
    assert counts and all(re.search(r"\(0 added, 0 changed, 0 removed, \d+ unchanged\)$", c) for c in counts), counts
    assert "files: would write 2 (0 new, 0 different, 2 identical)" in plan.changes


@pytest.mark.django_db(databases=["default", "my_a"])
def test_partial_restores_on_mariadb_touch_exactly_what_was_chosen(media_root, identity):
    build_site("my_a", posts=12, images=1)
    result = create_backup(database="my_a", recipients=[identity.recipient])
    with on("my_a"):
        target, other, deleted = Post.objects.order_by("pk")[:3]
        tags = sorted(target.tags.values_list("slug", flat=True))
        Post.objects.filter(pk=target.pk).update(title="vandalised")
        target.tags.clear()
        Post.objects.filter(pk=other.pk).update(title="a later, wanted edit")
        Post.objects.filter(pk=deleted.pk).delete()

    one = restore_backup(result.path, identity=identity, database="my_a", objects=[f"blog.Post:{target.pk}"])

    with on("my_a"):
        assert Post.objects.get(pk=target.pk).title == target.title
        assert sorted(Post.objects.get(pk=target.pk).tags.values_list("slug", flat=True)) == tags
        assert Post.objects.get(pk=other.pk).title == "a later, wanted edit"
        assert not Post.objects.filter(pk=deleted.pk).exists()
        Tag.objects.filter(slug__in=tags).update(name="renamed")
    assert one.rows["blog.Post"] == 1

    some = restore_backup(result.path, identity=identity, database="my_a", models=["blog.Tag"])

    with on("my_a"):
        assert not Tag.objects.filter(name="renamed").exists()
        assert Tag.objects.count() == some.rows["blog.Tag"] > 0
        assert Post.objects.get(pk=other.pk).title == "a later, wanted edit"


@pytest.mark.django_db(databases=["default", "sq_a", "my_b"])
def test_a_safety_backup_of_mariadb_undoes_the_restore(media_root, identity, tmp_path):
    """``--safety-backup``: what a restore into MariaDB replaces is backed up first, and restores back exactly."""
    from django.core.management import call_command

    build_site("sq_a", posts=4, images=1)
    result = create_backup(database="sq_a", passphrase="tr0ub4dor & 3 horses", output=tmp_path / "old.dbs")
    with on("my_b"):
        Post.objects.create(title="only in b 🐢", slug="only-in-b")
    before = fingerprint("my_b")
    (tmp_path / "pw").write_text("tr0ub4dor & 3 horses\n")
    out = io.StringIO()

    call_command("dbs_restore", str(result.path), "--database", "my_b", "--passphrase-file", str(tmp_path / "pw"),
                 "--safety-backup", "local", "--no-input", stdout=out)

    assert fingerprint("my_b") == fingerprint("sq_a")
    name = re.search(r"backed up the current data first: (\S+) on 'local'", out.getvalue()).group(1)
    restore_backup(name, target="local", passphrase="tr0ub4dor & 3 horses", database="my_b")
    assert fingerprint("my_b") == before


# --- native ------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "my_a", "my_b"])
def test_a_native_restore_of_broken_keys_changes_nothing_and_leaves_no_scratch_database(media_root, identity):
    build_site("my_a", posts=10, images=1)
    with connections["my_a"].cursor() as cursor:
        cursor.execute("SET SESSION foreign_key_checks = 0")
        cursor.execute("UPDATE blog_post SET category_id = 999999 ORDER BY id DESC LIMIT 1")
        cursor.execute("SET SESSION foreign_key_checks = 1")
    result = create_backup(kind="native", database="my_a", recipients=[identity.recipient])
    with on("my_b"):
        Post.objects.create(title="kept", slug="kept")
    before = fingerprint("my_b")

    with pytest.raises(RestoreError, match=r"broken foreign keys \(blog_post.category_id -> blog_category: 1 row"):
        restore_backup(result.path, identity=identity, database="my_b")

    assert fingerprint("my_b") == before
    assert _scratch_databases() == []


@pytest.mark.django_db(transaction=True, databases=["default", "my_a", "my_b"])
def test_native_backups_carry_zero_dates_as_they_are(media_root, identity):
    build_site("my_a", posts=3, images=0)
    with connections["my_a"].cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = ''")
        cursor.execute("UPDATE blog_post SET created_at = '0000-00-00 00:00:00' ORDER BY id LIMIT 1")
        cursor.execute("SET SESSION sql_mode = @@GLOBAL.sql_mode")
    result = create_backup(kind="native", database="my_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="my_b")
    with connections["my_b"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM blog_post WHERE CAST(created_at AS CHAR) LIKE '0000-00-00%%'")
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True, databases=["default", "my_a", "my_b"])
def test_writes_during_a_native_backup_never_split_its_counts_from_its_dump(media_root, identity):
    """Posts are written one after another all through the backup. The dump runs in its own session, so the
    manifest's counts (ours) and the dump's rows agree only if both snapshots open at the same instant."""
    build_site("my_a", posts=20, images=1)
    stop, written = threading.Event(), []

    def writer():
        with on("my_a"):
            while not stop.is_set():
                Post.objects.create(title=f"written during the backup {len(written)}", slug=f"during-{len(written)}")
                written.append(1)
        connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:  # the writer is in full swing before the backup starts
            time.sleep(0.01)
        result = create_backup(kind="native", database="my_a", recipients=[identity.recipient])
    finally:
        stop.set()
        thread.join()

    assert len(written) > 20
    assert validate_backup(result.path, identity=identity, decrypt=True).ok
    restore_backup(result.path, identity=identity, database="my_b")
    with on("my_b"):
        assert Post.objects.count() == result.manifest["counts"]["blog.Post"]


@pytest.mark.django_db(databases=["default", "my_a"])
@pytest.mark.parametrize(("version", "refusal"), [
    ("mariadb-dump  Ver 10.19 Distrib 10.5.23-MariaDB, for debian-linux-gnu (x86_64)",
     r"mariadb-dump 10.5 is older than the MariaDB \d+\.\d+ server; install the \d+\.\d+ client tools"),
    ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)",
     r"mariadb-dump is MySQL 8.0's client but the server is MariaDB \d+\.\d+; install the MariaDB client tools"),
])
def test_a_dump_client_older_than_the_server_or_of_the_other_vendor_is_named_and_not_run(
        version, refusal, identity, monkeypatch, tmp_path):
    fake = tmp_path / "mariadb-dump"
    fake.write_text(f"#!/bin/sh\necho '{version}'\n[ \"$1\" = --version ] || touch {tmp_path}/ran\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ToolMissingError, match=refusal):
        create_backup(kind="native", database="my_a", recipients=[identity.recipient], output=tmp_path / "n.dbs")
    assert not (tmp_path / "n.dbs").exists() and not (tmp_path / "ran").exists()


@pytest.mark.django_db(databases=["default", "my_a"])
def test_native_mariadb_without_a_dump_client_says_so(identity, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="mariadb-dump or mysqldump is not installed"):
        create_backup(kind="native", database="my_a", recipients=[identity.recipient], output=tmp_path / "n.dbs")


@pytest.mark.django_db(transaction=True, databases=["default", "my_a"])
def test_a_dump_that_never_opens_its_snapshot_is_stopped_and_the_writes_it_held_go_on(identity, monkeypatch,
                                                                                      tmp_path):
    """Writes to the counted tables are held only until the dump shows its snapshot is open: a dump stuck before
    that (behind a schema change, say) is given up after SNAPSHOT_WAIT_SECONDS, never for ever."""
    from dbs_admin.backups import native_mysql

    build_site("my_a", posts=3, images=0)
    stuck = tmp_path / "mariadb-dump"
    stuck.write_text("#!/bin/sh\n[ \"$1\" = --version ] && exec /usr/bin/mariadb-dump --version\n"
                     "echo '-- MariaDB dump (a header, then nothing)'\nexec sleep 60\n")
    stuck.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(native_mysql, "SNAPSHOT_WAIT_SECONDS", 1)

    started = time.monotonic()
    with pytest.raises(BackupError, match="had not opened its snapshot after 1 s"):
        create_backup(kind="native", database="my_a", recipients=[identity.recipient], output=tmp_path / "n.dbs")

    assert time.monotonic() - started < 20 and not (tmp_path / "n.dbs").exists()
    with connections["my_a"].cursor() as cursor:  # a write right away: nothing is held any more
        cursor.execute("SET SESSION lock_wait_timeout = 2")
        cursor.execute("UPDATE blog_post SET title = 'written after' ORDER BY id LIMIT 1")
        cursor.execute("SET SESSION lock_wait_timeout = DEFAULT")


@pytest.mark.django_db(transaction=True, databases=["default", "my_a"])
def test_a_dump_that_fails_half_way_says_why_and_leaves_no_backup(identity, monkeypatch, tmp_path):
    build_site("my_a", posts=3, images=0)
    failing = tmp_path / "mariadb-dump"
    failing.write_text("#!/bin/sh\n[ \"$1\" = --version ] && exec /usr/bin/mariadb-dump --version\n"
                       "printf -- '-- header\\n\\n--\\n-- Table structure for table `blog_post`\\n'\n"
                       "echo 'mariadb-dump: Error 2013: Lost connection to server during query' >&2\nexit 2\n")
    failing.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(BackupError, match="mariadb-dump failed: mariadb-dump: Error 2013: Lost connection"):
        create_backup(kind="native", database="my_a", recipients=[identity.recipient], output=tmp_path / "n.dbs")

    assert not list(tmp_path.glob("n.dbs*")) and not list(tmp_path.glob(".n.dbs*"))


@pytest.mark.django_db(transaction=True, databases=["default", "my_a", "my_b"])
def test_scratch_databases_of_a_killed_native_restore_are_dropped_and_a_live_ones_kept(media_root, identity):
    """A killed restore's scratch databases go at the next restore (or sweep); one whose restore still holds its
    named lock, on a connection of its own, stays."""
    import hashlib

    import MySQLdb

    from dbs_admin.backups.native_mysql import SCRATCH_PREFIX, sweep_orphan_scratch

    s = connections["my_b"].settings_dict
    tag = hashlib.blake2b(str(s["NAME"]).encode(), digest_size=3).hexdigest()
    dead, live = f"{SCRATCH_PREFIX}{tag}_dead000000", f"{SCRATCH_PREFIX}{tag}_live000000"
    with connections["my_b"].cursor() as cursor:
        for name in (dead, f"{dead}_old", live, f"{live}_old"):
            cursor.execute(f"CREATE DATABASE `{name}`")
    other = MySQLdb.connect(host=s["HOST"] or "127.0.0.1", port=int(s["PORT"] or 3306), user=s["USER"],
                            password=s.get("PASSWORD") or "")
    try:
        cur = other.cursor()
        cur.execute("SELECT GET_LOCK(%s, 0)", [live])
        assert cur.fetchone()[0] == 1
        assert sorted(sweep_orphan_scratch("my_b")) == [dead, f"{dead}_old"]
        assert sorted(n for n in _scratch_databases() if tag in n) == [live, f"{live}_old"]
    finally:
        other.close()  # the "restore" dies: its lock goes with its connection
    build_site("my_a", posts=4, images=1)
    result = create_backup(kind="native", database="my_a", recipients=[identity.recipient])
    restore_backup(result.path, identity=identity, database="my_b")
    assert [n for n in _scratch_databases() if tag in n] == []
