"""Hostile, damaged and refused backups: a clear error, and nothing changed anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.db import connections

from blog.models import Post, Tag
from dbs_admin import create_backup, read_manifest, restore_backup
from dbs_admin.backups import payload
from dbs_admin.backups.errors import IntegrityCheckError, MigrationMismatchError, PayloadError, UnsafePathError

from .conftest import on
from .helpers import build_site, frames_of, media_contents, payload_of, reseal, table_contents

pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


@pytest.fixture
def backed_up(media_root, identity):
    """A site in sq_a, its backup, and a different site in sq_b with its own media file."""
    build_site("sq_a", posts=20, images=3)
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    with on("sq_b"):
        Tag.objects.create(name="kept", slug="kept")
        Post.objects.create(title="target post", slug="target-post")
    (media_root / "uploads").mkdir(exist_ok=True)
    (media_root / "uploads" / "seed-11-00000.png").write_bytes(b"the target's own version of this file")
    return result


def _state(media_root: Path) -> tuple:
    outside = sorted(p.name for p in media_root.parent.iterdir())
    return table_contents("sq_b"), media_contents(media_root), outside, _indexes("sq_b")


def _indexes(alias: str) -> list[tuple[str, str]]:
    """Every index with its SQL: a restore sets them aside for the load and must always put them back."""
    from django.db import connections

    with connections[alias].cursor() as c:
        c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")
        return c.fetchall()


def _edit_rows(frames: list, label: str, edit) -> list:
    """``frames`` with the first ROWS frame of model ``label`` replaced by ``edit(rows)``."""
    import msgpack

    i = next(i for i, (k, b) in enumerate(frames) if k == payload.MODEL and json.loads(b)["model"] == label)
    assert frames[i + 1][0] == payload.ROWS
    frames = list(frames)
    frames[i + 1] = (payload.ROWS, msgpack.packb(edit(payload.load_rows(frames[i + 1][1])), use_bin_type=True))
    return frames


def _recount(frames: list, label: str, delta: int) -> tuple[list, dict]:
    """The trailer's count of ``label`` moved by ``delta`` (a crafted file that is consistent with itself)."""
    frames = list(frames)
    i = next(i for i, (k, _) in enumerate(frames) if k == payload.TRAILER)
    trailer = json.loads(frames[i][1])
    trailer["counts"][label] += delta
    frames[i] = (payload.TRAILER, json.dumps(trailer).encode())
    return frames, trailer["counts"]


def test_file_hash_mismatch_at_the_end_changes_nothing(backed_up, media_root, identity, tmp_path):
    frames = frames_of(payload_of(backed_up.path, identity))
    i = next(i for i, (k, _) in enumerate(frames) if k == payload.DATA and frames[i - 1][0] == payload.FILE)
    body = bytearray(frames[i][1])
    body[len(body) // 2] ^= 0x5A
    frames[i] = (payload.DATA, bytes(body))
    bad = reseal(frames, read_manifest(backed_up.path, identity=identity), tmp_path / "bad.dbs", identity)
    before = _state(media_root)

    with pytest.raises(IntegrityCheckError, match="does not match its recorded hash"):
        restore_backup(bad, identity=identity, database="sq_b")

    assert _state(media_root) == before  # rows were loaded before the bad file; all rolled back


def test_truncated_contents_change_nothing(backed_up, media_root, identity, tmp_path):
    data = payload_of(backed_up.path, identity)
    cut = reseal([], read_manifest(backed_up.path, identity=identity), tmp_path / "cut.dbs", identity,
                 raw=data[: int(len(data) * 0.8)])
    before = _state(media_root)
    with pytest.raises(PayloadError, match="incomplete"):
        restore_backup(cut, identity=identity, database="sq_b")
    assert _state(media_root) == before


def _crafted_file_backup(backed_up, identity, path: Path, name: str, data: bytes = b"owned") -> Path:
    """A well-formed backup holding no rows and one media file called ``name``."""
    import hashlib

    summary = read_manifest(backed_up.path, identity=identity)
    summary["counts"] = {}
    sha = hashlib.sha256(data).hexdigest()
    frames = [
        (payload.HEAD, json.dumps({"format": 1, "kind": "logical"}).encode()),
        (payload.REFS, json.dumps({"contenttypes": [], "permissions": []}).encode()),  # what readers require
        (payload.FILE, json.dumps({"root": "media", "name": name, "ref": name}).encode()),
        (payload.DATA, data),
        (payload.END_DATA, json.dumps({"size": len(data), "sha256": sha}).encode()),
        (payload.TRAILER, json.dumps({"counts": {}, "files": [["media", name, len(data), sha]]}).encode()),
        (payload.END, b""),
    ]
    return reseal(frames, summary, path, identity)


@pytest.mark.parametrize("name", ["../escaped.txt", "uploads/../../escaped.txt", "/tmp/dbs-absolute-escape.txt",
                                  "uploads/./..//escaped.txt", "a\\..\\escaped.txt"])
def test_hostile_file_names_write_nothing(backed_up, media_root, identity, tmp_path, name):
    crafted = _crafted_file_backup(backed_up, identity, tmp_path / "crafted.dbs", name)
    before = _state(media_root)
    with pytest.raises(UnsafePathError):
        restore_backup(crafted, identity=identity, database="sq_b")
    assert _state(media_root) == before
    assert not Path("/tmp/dbs-absolute-escape.txt").exists() and not (media_root.parent / "escaped.txt").exists()


@pytest.mark.parametrize("which", ["database", "its write-ahead log"])
def test_a_file_named_like_the_live_database_is_refused(backed_up, identity, tmp_path, settings, which):
    """A file root that holds the SQLite database (a project folder, say): a backup never writes over it."""
    db = Path(connections["sq_b"].settings_dict["NAME"])
    settings.MEDIA_ROOT = db.parent
    name = db.name if which == "database" else db.name + "-wal"
    crafted = _crafted_file_backup(backed_up, identity, tmp_path / "crafted.dbs", name)
    rows, stats = table_contents("sq_b"), _stats(db, db.parent / name)  # never open() live SQLite files here

    with pytest.raises(UnsafePathError, match="the site's database file"):
        restore_backup(crafted, identity=identity, database="sq_b")

    assert _stats(db, db.parent / name) == stats and table_contents("sq_b") == rows


def test_a_native_backup_never_reads_a_database_file_inside_media_root(settings):
    """Reading a live SQLite file with open()/close() would drop this process's locks on it (see files.py)."""
    from dbs_admin.backups.native import media_files

    db = Path(connections["sq_b"].settings_dict["NAME"])
    settings.MEDIA_ROOT = db.parent
    other = db.parent / f"an-upload-{os.getpid()}.txt"
    other.write_bytes(b"an ordinary file beside the databases")
    try:
        names = {name for _root, name, _path in media_files()}
    finally:
        other.unlink()
    assert other.name in names and not [n for n in names if n.startswith(db.name)]


def _stats(*paths: Path) -> list:
    return [(s.st_ino, s.st_size, s.st_mtime_ns) if (s := p.stat() if p.exists() else None) else None for p in paths]


def test_a_file_in_a_backup_folder_inside_media_is_refused_and_never_backed_up(backed_up, media_root, identity,
                                                                              tmp_path, settings):
    """A local target inside MEDIA_ROOT: backups neither carry the backups nor overwrite them."""
    folder = media_root / "backups"
    folder.mkdir()
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {"local": {"kind": "local", "path": str(folder)}}}
    (folder / "nightly.dbs").write_bytes(b"a backup")
    crafted = _crafted_file_backup(backed_up, identity, tmp_path / "crafted.dbs", "backups/nightly.dbs")
    before = _state(media_root)

    with pytest.raises(UnsafePathError, match="dbs_admin's own folder"):
        restore_backup(crafted, identity=identity, database="sq_b")
    assert _state(media_root) == before and (folder / "nightly.dbs").read_bytes() == b"a backup"

    native = create_backup(database="sq_a", kind="native", recipients=[identity.recipient], output=tmp_path / "n.dbs")
    names = [json.loads(body)["name"] for kind, body in frames_of(payload_of(native.path, identity))
             if kind == payload.FILE]
    assert "uploads/seed-11-00000.png" in names and not [n for n in names if n.startswith("backups/")]


def test_unknown_root_is_refused(backed_up, media_root, identity, tmp_path):
    summary = read_manifest(backed_up.path, identity=identity)
    frames = [(k, b) for k, b in frames_of(payload_of(backed_up.path, identity))]
    i = next(i for i, (k, _) in enumerate(frames) if k == payload.FILE)
    spec = json.loads(frames[i][1])
    spec["root"] = "/etc"
    frames[i] = (payload.FILE, json.dumps(spec).encode())
    crafted = reseal(frames, summary, tmp_path / "root.dbs", identity)
    before = _state(media_root)
    with pytest.raises(UnsafePathError, match="neither MEDIA_ROOT"):
        restore_backup(crafted, identity=identity, database="sq_b")
    assert _state(media_root) == before


def test_migration_mismatch_is_refused_naming_the_migrations(backed_up, media_root, identity, tmp_path):
    summary = read_manifest(backed_up.path, identity=identity)
    summary["migrations"] = [m for m in summary["migrations"] if m != ["blog", "0001_initial"]]
    summary["migrations"].append(["blog", "0099_from_the_future"])
    frames = frames_of(payload_of(backed_up.path, identity))
    crafted = reseal(frames, summary, tmp_path / "future.dbs", identity)
    before = _state(media_root)

    with pytest.raises(MigrationMismatchError) as caught:
        restore_backup(crafted, identity=identity, database="sq_b")

    assert caught.value.only_in_backup == ["blog.0099_from_the_future"]
    assert caught.value.only_in_code == ["blog.0001_initial"]
    assert "blog.0099_from_the_future" in str(caught.value) and "blog.0001_initial" in str(caught.value)
    assert _state(media_root) == before
    restored = restore_backup(crafted, identity=identity, database="sq_b", allow_migration_mismatch=True)
    assert restored.rows["blog.Post"] == 20


def test_before_writing_runs_after_every_check_and_before_the_first_write(backed_up, media_root, identity,
                                                                         tmp_path):
    """The hook the safety backup hangs on: not called for a refused restore (so a refusal costs no backup),
    called once on the untouched database otherwise, and its failure leaves everything as it was."""
    from dbs_admin.sealed import Identity

    summary = read_manifest(backed_up.path, identity=identity)
    summary["migrations"].append(["blog", "0099_from_the_future"])
    crafted = reseal(frames_of(payload_of(backed_up.path, identity)), summary, tmp_path / "future.dbs", identity)
    calls: list[tuple] = []

    def hook():
        calls.append(table_contents("sq_b"))

    before = _state(media_root)
    with pytest.raises(MigrationMismatchError):
        restore_backup(crafted, identity=identity, database="sq_b", before_writing=hook)
    with pytest.raises(Exception, match="identity|key|recipient"):
        restore_backup(backed_up.path, identity=Identity.generate(), database="sq_b", before_writing=hook)
    restore_backup(backed_up.path, identity=identity, database="sq_b", dry_run=True, before_writing=hook)
    assert calls == [] and _state(media_root) == before

    def failing_hook():
        raise RuntimeError("the safety backup failed")

    with pytest.raises(RuntimeError, match="safety backup failed"):
        restore_backup(backed_up.path, identity=identity, database="sq_b", before_writing=failing_hook)
    assert _state(media_root) == before

    result = restore_backup(backed_up.path, identity=identity, database="sq_b", before_writing=hook)
    assert calls == [before[0]]  # once, on the database as it was
    assert result.rows["blog.Post"] == 20 and table_contents("sq_b") != before[0]


def test_dry_run_writes_nothing(backed_up, media_root, identity):
    before = _state(media_root)
    result = restore_backup(backed_up.path, identity=identity, database="sq_b", dry_run=True)
    assert result.dry_run and result.rows["blog.Post"] == 20 and result.files == 3
    assert any(line.startswith("blog.Post: would replace 1 row(s) with 20") for line in result.changes)
    assert _state(media_root) == before


def test_partial_restore_of_one_object(backed_up, media_root, identity):
    with on("sq_a"):
        posts = list(Post.objects.order_by("pk")[:3])
        target, other, deleted = posts
        original_tags = sorted(target.tags.values_list("slug", flat=True))
        Post.objects.filter(pk=target.pk).update(title="vandalised")
        target.tags.clear()
        Post.objects.filter(pk=other.pk).update(title="a later, wanted edit")
        Post.objects.filter(pk=deleted.pk).delete()

    result = restore_backup(backed_up.path, identity=identity, database="sq_a", objects=[f"blog.Post:{target.pk}"])

    with on("sq_a"):
        restored = Post.objects.get(pk=target.pk)
        assert restored.title == target.title
        assert sorted(restored.tags.values_list("slug", flat=True)) == original_tags
        assert Post.objects.get(pk=other.pk).title == "a later, wanted edit"  # nothing else was touched
        assert not Post.objects.filter(pk=deleted.pk).exists()
    assert result.rows["blog.Post"] == 1


def test_partial_restore_of_a_model_and_unknown_object(backed_up, identity):
    with on("sq_a"):
        Tag.objects.all().delete()
    result = restore_backup(backed_up.path, identity=identity, database="sq_a", models=["blog.Tag"])
    with on("sq_a"):
        assert Tag.objects.count() == result.rows["blog.Tag"] > 0
    from dbs_admin.backups.errors import RestoreError

    with pytest.raises(RestoreError, match="not found in the backup"):
        restore_backup(backed_up.path, identity=identity, database="sq_a", objects=["blog.Post:999999"])
    with pytest.raises(RestoreError, match="holds no dbs_admin.backup"):
        restore_backup(backed_up.path, identity=identity, database="sq_a", models=["dbs_admin.Backup"])


def test_rows_that_break_a_unique_index_rebuilt_after_the_load_change_nothing(backed_up, media_root, identity,
                                                                             tmp_path):
    """The tag links' (post, tag) index is set aside for the load and rebuilt while the files come in."""
    from dbs_admin.backups.errors import RestoreError

    frames = frames_of(payload_of(backed_up.path, identity))
    label = "blog.Post_tags"

    def duplicate_a_link(rows):
        first = rows[0]
        return rows + [[max(r[0] for r in rows) + 1, *first[1:]]]  # a new id, the same (post, tag) pair

    frames, counts = _recount(_edit_rows(frames, label, duplicate_a_link), label, +1)
    manifest = read_manifest(backed_up.path, identity=identity)
    manifest["counts"], manifest["rows"] = counts, sum(counts.values())
    bad = reseal(frames, manifest, tmp_path / "dup.dbs", identity)
    before = _state(media_root)

    with pytest.raises(RestoreError, match="UNIQUE constraint failed: blog_post_tags"):
        restore_backup(bad, identity=identity, database="sq_b")

    assert _state(media_root) == before  # rows, files and the indexes themselves as they were


def test_table_records_after_the_files_are_refused(backed_up, media_root, identity, tmp_path):
    """The grammar is tables, then files: the database is busy rebuilding indexes once files begin."""
    frames = frames_of(payload_of(backed_up.path, identity))
    first_file = next(i for i, (k, _) in enumerate(frames) if k == payload.FILE)
    tag_model = next(i for i, (k, b) in enumerate(frames)
                     if k == payload.MODEL and json.loads(b)["model"] == "blog.Tag")
    moved = frames[tag_model:tag_model + 2]
    frames = frames[:tag_model] + frames[tag_model + 2:first_file] + frames[first_file:]
    end_of_first_file = next(i for i, (k, _) in enumerate(frames) if k == payload.END_DATA) + 1
    frames = frames[:end_of_first_file] + moved + frames[end_of_first_file:]
    bad = reseal(frames, read_manifest(backed_up.path, identity=identity), tmp_path / "order.dbs", identity)
    before = _state(media_root)

    with pytest.raises(PayloadError, match="out of order"):
        restore_backup(bad, identity=identity, database="sq_b")

    assert _state(media_root) == before


def test_the_cyclic_collector_is_paused_for_the_load_and_back_on_after_it_even_after_a_failure(
        backed_up, media_root, identity, tmp_path):
    """Paused while rows load (its full-heap walks were a tenth of a restore); a worker process must never
    be left without it, whatever the restore's outcome."""
    import gc

    seen: list[bool] = []
    restore_backup(backed_up.path, identity=identity, database="sq_b",
                   progress=lambda stage, done, total: seen.append(gc.isenabled()) if stage == "rows" else None)
    assert seen and not any(seen) and gc.isenabled()

    frames = frames_of(payload_of(backed_up.path, identity))
    cut = next(i for i, (kind, _) in enumerate(frames) if kind == payload.FILE)
    truncated = reseal(frames[:cut + 1], read_manifest(backed_up.path, identity=identity), tmp_path / "t.dbs",
                       identity)
    with pytest.raises(PayloadError):
        restore_backup(truncated, identity=identity, database="sq_b")
    assert gc.isenabled()
