"""The demo blog: models, rendering, public pages, admin."""

import pytest
from django.urls import reverse

from blog.models import Category, Post, Tag

pytestmark = pytest.mark.django_db


def make_post(**kwargs) -> Post:
    defaults = {"title": "Hello world", "content_md": "Some *text*.", "status": Post.Status.PUBLISHED}
    return Post.objects.create(**{**defaults, **kwargs})


def test_markdown_post_renders_html_on_save():
    post = make_post(content_md="# Title\n\nA **bold** move.")
    assert post.content_html == "<h1>Title</h1>\n<p>A <strong>bold</strong> move.</p>"
    post.content_md = "changed"
    post.save()
    assert post.content_html == "<p>changed</p>"


def test_html_post_keeps_its_html():
    post = make_post(editor_type=Post.EditorType.HTML, content_md="", content_html="<p>raw <em>html</em></p>")
    assert post.content_html == "<p>raw <em>html</em></p>"


def test_slug_from_title_when_blank():
    assert make_post(title="Backups That Restore").slug == "backups-that-restore"


def test_list_shows_only_published(client):
    make_post(title="Visible one", slug="visible")
    make_post(title="Hidden draft", slug="hidden", status=Post.Status.DRAFT)
    page = client.get(reverse("blog:post_list")).content.decode()
    assert "Visible one" in page and "Hidden draft" not in page


def test_detail_shows_body_tags_and_category(client):
    cat = Category.objects.create(name="Ops", slug="ops")
    post = make_post(title="Drills", slug="drills", category=cat, content_md="Run **drills**.")
    post.tags.add(Tag.objects.create(name="recovery", slug="recovery"))
    page = client.get(post.get_absolute_url()).content.decode()
    assert "<strong>drills</strong>" in page and "recovery" in page and "Ops" in page


def test_draft_detail_is_404(client):
    post = make_post(slug="secret", status=Post.Status.DRAFT)
    assert client.get(post.get_absolute_url()).status_code == 404


def test_list_is_paginated(client):
    Post.objects.bulk_create([Post(title=f"P{i}", slug=f"p{i}", status="published") for i in range(25)])
    first = client.get(reverse("blog:post_list"))
    assert len(first.context["posts"]) == 20 and "Page 1 of 2" in first.content.decode()


@pytest.mark.parametrize("model", ["category", "tag", "post", "attachment"])
def test_blog_admin_pages_load_for_superuser(client, superuser, model):
    make_post(slug="admin-visible")
    client.force_login(superuser)
    assert client.get(reverse(f"admin:blog_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:blog_{model}_add")).status_code == 200


def test_admin_index_has_backups_section_for_superuser_only(client, superuser, staff_user):
    client.force_login(superuser)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Backups" in page and reverse("admin:dbs_admin_dashboard_changelist") in page
    assert client.get(reverse("admin:dbs_admin_dashboard_changelist")).status_code == 200
    client.force_login(staff_user)
    assert "Backups" not in client.get(reverse("admin:index")).content.decode()
    assert client.get(reverse("admin:dbs_admin_dashboard_changelist")).status_code == 403
