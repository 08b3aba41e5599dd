"""demo_seed: realistic, deterministic, and consistent with what Post.save() renders."""

import hashlib
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from blog.models import Attachment, Category, Post, Tag
from blog.rendering import render_markdown

pytestmark = pytest.mark.django_db


def fingerprint(media: Path) -> str:
    h = hashlib.sha256()
    for post in Post.objects.order_by("slug").prefetch_related("tags"):
        h.update(repr((post.slug, post.title, post.content_md, post.content_html, post.status,
                       post.category.slug, sorted(t.slug for t in post.tags.all()))).encode())
    for path in sorted(media.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_seed_creates_requested_content(media_root):
    call_command("demo_seed", posts=120, images=8, seed=3, no_history=True)
    assert Post.objects.count() == 120
    assert Attachment.objects.count() == 8 and Category.objects.count() >= 10 and Tag.objects.count() > 20
    assert Post.tags.through.objects.count() > 120
    referencing = Post.objects.filter(content_html__contains='<img alt="Figure')
    assert referencing.count() > 30
    img_src = referencing.first().content_html.split('src="')[1].split('"')[0]
    assert img_src.startswith("/media/uploads/seed-3-") and (media_root / img_src.removeprefix("/media/")).exists()
    assert Post.objects.filter(status="published").count() > Post.objects.filter(status="draft").count() > 0


def test_seeded_html_matches_what_save_renders(media_root):
    call_command("demo_seed", posts=60, images=4, seed=5, no_history=True)
    for post in Post.objects.all():
        assert post.content_html == render_markdown(post.content_md), post.slug


def test_same_seed_same_content(media_root):
    call_command("demo_seed", posts=40, images=3, seed=9, no_history=True)
    first = fingerprint(media_root)
    call_command("demo_seed", posts=40, images=3, seed=9, flush=True, no_history=True)
    assert fingerprint(media_root) == first
    call_command("demo_seed", posts=40, images=3, seed=10, flush=True, no_history=True)
    assert fingerprint(media_root) != first


def test_seed_refuses_to_mix_with_existing_content(media_root):
    call_command("demo_seed", posts=5, images=0, no_history=True)
    with pytest.raises(CommandError, match="--flush"):
        call_command("demo_seed", posts=5, images=0, no_history=True)
    assert Post.objects.count() == 5


def test_seed_ends_with_the_history_baseline(media_root, settings, tmp_path, capsys):
    """Every seeded post has its first version, so its original text survives its first edit."""
    from dbs_admin.history.snapshot import object_history
    from dbs_admin.models import HistoryVersion

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_ROOT": str(tmp_path / "history")}
    call_command("demo_seed", posts=12, images=2, seed=4)
    assert "History: a first version of 12 posts" in capsys.readouterr().out
    assert HistoryVersion.objects.filter(version_id="initial").count() == 12
    post = Post.objects.filter(content_html__contains="<img").first()
    version = object_history(Post, post.slug).read("initial")
    assert version["content_md"] == post.content_md and version["images"] and version["images"][0]["stored"]
