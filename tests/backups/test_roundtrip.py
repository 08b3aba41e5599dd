"""Round trips: what goes in comes back, row for row and byte for byte, across engines and aliases."""

from __future__ import annotations

import pytest

from blog.models import Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.models import Backup, BackupCopy

from .conftest import ALL, case, needs_services, on
from .helpers import build_site, fingerprint, media_contents, table_contents, wipe

pytestmark = pytest.mark.usefixtures("backup_settings")

ENGINES = {"sq": "sqlite", "pg": "postgresql", "my": "mysql"}
# Each engine into itself, and the six directions between the three engines.
PAIRS = [(f"{a}_a", f"{b}_b") for a in ENGINES for b in ENGINES]


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(("source", "dest"), [case(a, b, id=f"{a}-to-{b}") for a, b in PAIRS])
def test_logical_round_trip_is_exact(source, dest, media_root, identity, request):
    needs_services(request, source, dest)
    build_site(source)
    with on(dest):  # something to be replaced, with ids that clash with the backup's
        Post.objects.create(title="only in the target", slug="only-in-target", content_md="x")
    before = table_contents(source)
    files = media_contents(media_root)
    default_rows = table_contents("default")

    result = create_backup(database=source, recipients=[identity.recipient], label="rt")

    assert result.manifest["counts"]["blog.Post"] == 40 and result.manifest["engine"] == ENGINES[source[:2]]
    assert result.targets == ["local"] and result.path.is_file()
    row = Backup.objects.get(pk=result.backup_id)
    assert row.name == result.name and row.sha256 == result.sha256 and row.status == Backup.Status.OK
    assert BackupCopy.objects.filter(backup=row, target="local").exists()

    wipe(media_root)
    restored = restore_backup(result.name, target="local", identity=identity, database=dest)

    assert fingerprint(dest) == fingerprint(source)  # every field of every row of every model, M2M links too
    assert table_contents(dest) == before  # (the same, compared row by row: a failure shows where they differ)
    assert media_contents(media_root) == files and len(files) == 4
    assert restored.rows["blog.Post"] == 40 and restored.files == 4 and not restored.dry_run
    assert table_contents("default") == default_rows  # the restore went where it was told, nowhere else
    with on(dest):  # sequences were reset: new rows get fresh ids
        assert Post.objects.create(title="after", slug="after-restore").pk > max(r[0] for r in before["blog.Post"])


def _transactional(a: str, b: str, name: str):
    """Only the databases a case uses are flushed after it (a flush per database costs seconds)."""
    return case(a, b, id=name, marks=pytest.mark.django_db(transaction=True, databases=["default", a, b]))


@pytest.mark.parametrize(("source", "dest"), [_transactional("sq_a", "sq_b", "sqlite"),
                                              _transactional("pg_a", "pg_b", "postgresql"),
                                              _transactional("my_a", "my_b", "mariadb")])
def test_native_round_trip_keeps_console_records(source, dest, media_root, identity, request):
    needs_services(request, source)
    build_site(source, posts=25, images=3)
    before = table_contents(source)
    files = media_contents(media_root)
    with on(dest):
        Post.objects.create(title="doomed", slug="doomed")
        Backup.objects.create(name="console-record.dbs", kind="native")

    result = create_backup(kind="native", database=source, recipients=[identity.recipient])

    assert result.manifest["counts"]["blog.Post"] == 25 and result.kind == "native"
    wipe(media_root)
    restored = restore_backup(result.path, identity=identity, database=dest)
    assert table_contents(dest) == before
    assert media_contents(media_root) == files
    assert restored.files == 3
    with on(dest):  # the console's own table was kept as it was, not replaced by the backup's
        assert list(Backup.objects.using(dest).values_list("name", flat=True)) == ["console-record.dbs"]


@pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "sq_b"])
def test_a_restore_sends_no_model_signals_and_writes_no_history(media_root, identity, settings, tmp_path):
    """Rows go in with bulk SQL, so no receiver (the post history's, a project's own) runs once per restored row;
    the history of the restored posts is left as it was."""
    from django.db.models import signals

    from dbs_admin.models import HistoryVersion

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_ROOT": str(tmp_path / "history")}
    build_site("sq_a", posts=12, images=2)
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    versions_before = HistoryVersion.objects.count()
    heard: list[str] = []

    def receiver(sender, **kwargs):
        heard.append(f"{sender.__name__}")

    watched = [signals.pre_save, signals.post_save, signals.pre_delete, signals.post_delete, signals.m2m_changed]
    for signal in watched:
        signal.connect(receiver, weak=False, dispatch_uid="restore-test")
    try:
        restored = restore_backup(result.path, identity=identity, database="sq_b")
    finally:
        for signal in watched:
            signal.disconnect(dispatch_uid="restore-test")

    assert restored.rows["blog.Post"] == 12 and restored.rows["blog.Post_tags"] > 0
    assert heard == []
    assert HistoryVersion.objects.count() == versions_before
    assert not (tmp_path / "history").exists() or not any((tmp_path / "history").rglob("*.json"))
