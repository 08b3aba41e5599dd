"""``dbs_history``: list, show, diff, restore --dry-run, import of the original layout, reindex."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from blog.models import Post
from dbs_admin.history.snapshot import object_history
from dbs_admin.models import HistoryVersion

from .conftest import png, put_image, tag

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    import io

    out = io.StringIO()
    call_command("dbs_history", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_versions(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(body="The quick brown fox.", tags=("a",))
    with django_capture_on_commit_callbacks(execute=True):
        post.content_md = "The quick red fox."
        post.save()
        post.tags.add(tag("b"))
    return post


def test_list_show_diff_and_dry_run(two_versions):
    post = two_versions
    assert run("list", "blog.Post").strip() == f"{post.slug}\t2 versions"
    lines = run("list", "blog.Post", post.slug).splitlines()
    assert lines[0].startswith("initial\t") and "created" in lines[0]
    assert lines[1].startswith("update_") and "content_md" in lines[1] and "tags +b" in lines[1]
    shown = json.loads(run("show", "blog.Post", post.slug, "--version", "initial"))
    assert shown["content_md"] == "The quick brown fox." and shown["tags"] == ["a"]
    update = lines[1].split("\t")[0]
    diff = run("diff", "blog.Post", post.slug, "initial", update)
    assert "-The quick brown fox." in diff and "+The quick red fox." in diff and "tags: +b" in diff
    out = run("restore", "blog.Post", post.slug, "--version", "initial", "--dry-run")
    assert "[dry run] field content_md: 'The quick red fox.' -> 'The quick brown fox.'" in out
    assert Post.objects.get().content_md == "The quick red fox."
    with pytest.raises(CommandError, match="No version 'update_nope'"):
        run("show", "blog.Post", post.slug, "--version", "update_nope")
    with pytest.raises(CommandError, match="has no history"):
        run("list", "blog.Tag")


def test_restore_command_writes(two_versions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out = run("restore", "blog.Post", two_versions.slug, "--version", "initial")
    assert "restored blog.Post" in out
    post = Post.objects.get()
    assert post.content_md == "The quick brown fox." and [t.name for t in post.tags.all()] == ["a"]


def test_reindex_rebuilds_the_index_from_the_tree(two_versions):
    rows = sorted(HistoryVersion.objects.values_list("object_key", "version_id", "summary", "username"))
    HistoryVersion.objects.all().delete()
    assert "indexed 2 versions" in run("reindex")
    assert sorted(HistoryVersion.objects.values_list("object_key", "version_id", "summary", "username")) == rows


def make_seed_tree(root, media_root):
    """A tree of the original blog layout, written by hand: post.json + updates/update_YYYY-MM-DD_HH-MM-SS/."""
    post_dir = root / "backups" / "about-learningsea"
    (post_dir / "images").mkdir(parents=True)
    (post_dir / "images" / "cover.png").write_bytes(png(11))
    base = {
        "title": "About LearningSea", "slug": "about-learningsea", "excerpt": "Intro", "editor_type": "html",
        "content_md": "", "content_html": '<p>Hello</p><img src="/media/uploads/cover.png">', "status": "published",
        "created_at": "2026-03-28T04:16:16.903208+00:00", "updated_at": "2026-03-28T04:16:16.991055+00:00",
        "category": "Meta", "tags": ["LearningSea"], "images": ["cover.png"],
    }
    (post_dir / "post.json").write_text(json.dumps(base))
    (post_dir / "post.md").write_text("---\ntitle: About LearningSea\n---\nHello\n")
    upd = post_dir / "updates" / "update_2026-03-29_10-00-00"
    (upd / "images").mkdir(parents=True)
    (upd / "images" / "diagram.png").write_bytes(png(12))
    second = {**base, "content_html": base["content_html"] + '<img src="/media/uploads/diagram.png">',
              "tags": ["LearningSea", "Meta"], "images": ["diagram.png"], "updated_at": "2026-03-29T10:00:00+00:00"}
    (upd / "post.json").write_text(json.dumps(second))
    upd2 = post_dir / "updates" / "update_2026-03-30_08-30-00"
    upd2.mkdir()
    (upd2 / "post.json").write_text(json.dumps({**second, "title": "About LearningSea (v3)", "images": []}))
    return root / "backups"


def test_import_of_a_hand_made_tree_then_recover(eager, tmp_path, media_root, django_capture_on_commit_callbacks):
    tree = make_seed_tree(tmp_path / "old", media_root)
    out = run("import", str(tree))
    assert "imported about-learningsea: 3 versions" in out and "2 image files stored" in out
    history = object_history(Post, "about-learningsea")
    ids = history.versions()
    assert ids == ["initial", "update_2026-03-29_10-00-00_000000", "update_2026-03-30_08-30-00_000000"]
    v2 = history.read(ids[1])
    assert [(i["name"], history.read_image(i)) for i in v2["images"]] == [
        ("uploads/cover.png", png(11)), ("uploads/diagram.png", png(12))]
    assert history.read(ids[2])["images"] == v2["images"]  # no new bytes stored, still self-describing
    assert HistoryVersion.objects.filter(object_deleted=True).count() == 3  # no live post: recoverable
    assert "skipped about-learningsea" in run("import", str(tree))
    with django_capture_on_commit_callbacks(execute=True):
        run("restore", "blog.Post", "about-learningsea")
    post = Post.objects.get(slug="about-learningsea")
    assert post.title == "About LearningSea (v3)" and sorted(t.name for t in post.tags.all()) == ["LearningSea", "Meta"]
    assert (media_root / "uploads" / "diagram.png").read_bytes() == png(12)
    assert not HistoryVersion.objects.filter(object_deleted=True).exists()


def test_import_refuses_a_foreign_folder(eager, tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(CommandError, match="No <slug>/post.json"):
        run("import", str(tmp_path / "junk"))
    bad = tmp_path / "bad" / "x"
    bad.mkdir(parents=True)
    (bad / "post.json").write_text("{not json")
    with pytest.raises(CommandError, match="not readable JSON"):
        run("import", str(tmp_path / "bad"))


def test_images_in_media_are_untouched_by_import(eager, tmp_path, media_root):
    put_image(media_root, "cover.png", b"live bytes")
    run("import", str(make_seed_tree(tmp_path / "old", media_root)))
    assert (media_root / "uploads" / "cover.png").read_bytes() == b"live bytes"
