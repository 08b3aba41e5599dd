"""Restores reproduce a stored version exactly; dry runs write nothing; deleted posts come back whole."""

from __future__ import annotations

import json

import pytest

from blog.models import Category, Post, Tag
from dbs_admin.history.collect import capture_instance, ignored_in_compare
from dbs_admin.history.errors import CorruptVersionError, UnsafePathError
from dbs_admin.history.revert import apply_restore, plan_restore, restore
from dbs_admin.history.snapshot import object_history
from dbs_admin.models import HistoryVersion

from .conftest import png, put_image, tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def edited_post(eager, make_post, media_root, django_capture_on_commit_callbacks):
    """A post with four versions: text, tags, an added image, and a replaced image under the same name."""
    a = put_image(media_root, "a.png", png(1))
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(body=f"First words.\n\n{a}", tags=("one",))
    with django_capture_on_commit_callbacks(execute=True):
        post.content_md = f"Second words, edited.\n\n{a}"
        post.excerpt = "Now with an excerpt"
        post.save()
    b = put_image(media_root, "b.png", png(2))
    with django_capture_on_commit_callbacks(execute=True):
        post.tags.set([tag("two"), tag("three")])
        post.content_md += f"\n\n{b}"
        post.save()
    put_image(media_root, "a.png", png(9))
    with django_capture_on_commit_callbacks(execute=True):
        post.category = Category.objects.create(name="Other", slug="other")
        post.save()
    assert len(object_history(Post, post.slug).versions()) == 4
    return post


def state_of(post: Post, media_root) -> tuple[dict, dict]:
    post = Post.objects.get(pk=post.pk)
    data = capture_instance(post)
    images = {p.relative_to(media_root).as_posix(): p.read_bytes() for p in media_root.rglob("*") if p.is_file()}
    return data, images


def assert_matches(post, version_doc, media_root, history):
    data, images = state_of(post, media_root)
    ignored = ignored_in_compare(Post)
    for name, value in data.items():
        if name not in ignored:
            assert value == version_doc[name], name
    for entry in version_doc["images"]:
        assert images[entry["name"]] == history.read_image(entry)


def test_restoring_each_version_reproduces_it_exactly(edited_post, media_root, django_capture_on_commit_callbacks):
    history = object_history(Post, edited_post.slug)
    for version in history.versions():
        with django_capture_on_commit_callbacks(execute=True):
            plan, result = restore(Post, edited_post.slug, version)
        assert result is not None and result.obj.pk == edited_post.pk
        assert_matches(edited_post, history.read(version), media_root, history)
    # Restoring the older versions made new versions, marked as restores.
    newest = history.newest()[1]["_history"]
    assert newest["summary"]["restored_from"] == history.versions()[3]


def test_restore_becomes_a_new_version_and_is_labelled(edited_post, media_root, django_capture_on_commit_callbacks):
    history = object_history(Post, edited_post.slug)
    before = history.versions()
    with django_capture_on_commit_callbacks(execute=True):
        restore(Post, edited_post.slug, "initial")
    after = history.versions()
    assert len(after) == len(before) + 1
    summary = history.read(after[-1])["_history"]["summary"]
    assert summary["restored_from"] == "initial"
    assert summary["m2m"]["tags"] == {"added": ["one"], "removed": ["three", "two"]}
    assert HistoryVersion.objects.filter(version_id=after[-1]).exists()


def test_dry_run_reports_exactly_what_changes_and_writes_nothing(edited_post, media_root,
                                                                  django_capture_on_commit_callbacks):
    history = object_history(Post, edited_post.slug)
    db_before, files_before = state_of(edited_post, media_root)
    tree_before = sorted((p, p.stat().st_mtime_ns) for p in history.dir.rglob("*"))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        plan, result = restore(Post, edited_post.slug, "initial", dry_run=True)
    assert result is None and callbacks == []
    assert state_of(edited_post, media_root) == (db_before, files_before)
    assert sorted((p, p.stat().st_mtime_ns) for p in history.dir.rglob("*")) == tree_before
    assert {f.name for f in plan.fields} == {"excerpt", "content_md", "content_html", "category"}
    assert plan.related == {"tags": {"added": ["one"], "removed": ["three", "two"]}}
    assert [i.name for i in plan.images] == ["uploads/a.png"]  # a.png was replaced since; b.png is not in initial
    text = "\n".join(plan.lines())
    assert "field excerpt: 'Now with an excerpt' -> ''" in text and "tags +one" in text
    assert "write image uploads/a.png" in text


def test_restore_creates_missing_category_and_tags(edited_post, django_capture_on_commit_callbacks):
    Tag.objects.filter(name="one").delete()
    Category.objects.filter(name="Meta").delete()
    plan = plan_restore(Post, edited_post.slug, "initial")
    assert set(plan.created_related) == {"category 'Meta'", "tag 'one'"}
    with django_capture_on_commit_callbacks(execute=True):
        apply_restore(plan)
    post = Post.objects.get(pk=edited_post.pk)
    assert post.category.name == "Meta" and [t.name for t in post.tags.all()] == ["one"]
    assert post.category.slug == "meta"


def test_deleted_post_is_recovered_with_tags_and_image_bytes(edited_post, media_root,
                                                               django_capture_on_commit_callbacks):
    history = object_history(Post, edited_post.slug)
    last = history.newest()[1]
    pk = edited_post.pk
    with django_capture_on_commit_callbacks(execute=True):
        edited_post.delete()
    for p in media_root.rglob("*.png"):
        p.unlink()
    assert HistoryVersion.objects.filter(object_deleted=True).count() == 4
    with django_capture_on_commit_callbacks(execute=True):
        plan, result = restore(Post, history.dir.name)
    assert plan.creates_object and result.created and result.obj.pk == pk
    assert_matches(result.obj, last, media_root, history)
    assert sorted(t.name for t in result.obj.tags.all()) == ["three", "two"]
    assert history.deleted_info() is None
    assert not HistoryVersion.objects.filter(object_deleted=True).exists()


def test_damaged_image_bytes_restore_nothing(edited_post, media_root, django_capture_on_commit_callbacks):
    history = object_history(Post, edited_post.slug)
    entry = history.read("initial")["images"][0]
    stored = history.dir / entry["stored"]
    data = bytearray(stored.read_bytes())
    data[100] ^= 0x01
    stored.write_bytes(bytes(data))
    db_before, files_before = state_of(edited_post, media_root)
    with pytest.raises(CorruptVersionError, match="do not match their sha256"):
        with django_capture_on_commit_callbacks(execute=True):
            restore(Post, edited_post.slug, "initial")
    assert state_of(edited_post, media_root) == (db_before, files_before)
    assert not list(media_root.rglob(".dbs-restore-*"))


def _edit_first_image(post, **fields) -> None:
    """Rewrite the stored version's first image entry, as a hostile or corrupt tree would."""
    path = object_history(Post, post.slug).dir / "post.json"
    doc = json.loads(path.read_text())
    doc["images"][0].update(fields)
    path.write_text(json.dumps(doc))


def test_hostile_image_name_is_refused(edited_post):
    _edit_first_image(edited_post, name="../../outside.png")
    with pytest.raises(UnsafePathError, match="outside MEDIA_ROOT"):
        plan_restore(Post, edited_post.slug, "initial")
    _edit_first_image(edited_post, name="uploads/a.png", stored="../../../etc/passwd")
    with pytest.raises(UnsafePathError, match="outside"):
        plan_restore(Post, edited_post.slug, "initial")


def test_image_name_inside_a_backup_folder_in_media_root_is_refused(edited_post, media_root, settings):
    """A local backup target inside MEDIA_ROOT: restoring a version never writes over a backup."""
    folder = media_root / "backups"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {"local": {"kind": "local", "path": str(folder)}}}
    _edit_first_image(edited_post, name="backups/nightly.dbs")
    with pytest.raises(UnsafePathError, match="dbs_admin's own folder"):
        plan_restore(Post, edited_post.slug, "initial")
