"""The admin pages: superuser only; history list, compare, restore preview and confirm, recover deleted."""

from __future__ import annotations

import re

import pytest

from blog.models import Post
from dbs_admin.history.snapshot import object_history
from dbs_admin.models import AuditEvent, HistoryVersion

from .conftest import png, put_image, tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(eager, make_post, media_root, django_capture_on_commit_callbacks):
    a = put_image(media_root, "a.png", png(1))
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(body=f"The quick brown fox jumps.\n\n{a}", tags=("old",))
    b = put_image(media_root, "b.png", png(2))
    with django_capture_on_commit_callbacks(execute=True):
        post.content_md = f"The quick red fox jumps.\n\n{b}"
        post.save()
        post.tags.set([tag("new")])
    return post


def urls(post: Post) -> dict[str, str]:
    history = object_history(Post, post.slug)
    stored = history.read("initial")["images"][0]["stored"]
    return {
        "history": f"/admin/blog/post/{post.pk}/history/",
        "compare": f"/admin/blog/post/{post.pk}/history/compare/",
        "restore": f"/admin/blog/post/{post.pk}/history/restore/initial/",
        "image": f"/admin/blog/post/dbs-history/image/{post.slug}/{stored}",
        "deleted": "/admin/blog/post/dbs-history/deleted/",
        "recover": f"/admin/blog/post/dbs-history/deleted/{post.slug}/",
        "index": "/admin/dbs_admin/historyversion/",
    }


def test_anonymous_is_sent_to_login_and_staff_get_403(post, client, staff_user):
    for name, url in urls(post).items():
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], name
    client.force_login(staff_user)
    for name, url in urls(post).items():
        if name == "history":
            continue
        assert client.get(url).status_code == 403, name
    assert client.post(urls(post)["restore"]).status_code == 403
    # Staff who may open the History button get Django's action log, never stored content.
    staff_user.user_permissions.add(*__import__("django.contrib.auth.models", fromlist=["Permission"])
                                    .Permission.objects.filter(codename__in=["view_post", "change_post"]))
    response = client.get(urls(post)["history"])
    assert response.status_code == 200 and b"quick" not in response.content and b"dbs-versions" not in response.content
    assert Post.objects.get().content_md.startswith("The quick red fox")


def test_history_lists_versions_with_who_and_what(post, client, superuser):
    client.force_login(superuser)
    response = client.get(urls(post)["history"])
    html = response.content.decode()
    assert response.status_code == 200 and 'id="dbs-versions"' in html
    assert html.count('class="dbs-version"') == 2
    # Versions are numbered and timed for people, the stored folder's name is only a tooltip.
    assert '">version 2</td>' in html and '">version 1</td>' in html and ">update_" not in html
    assert "content_md" in html and "tags +new" in html and "tags -old" in html and "image +uploads/b.png" in html
    change = client.get(f"/admin/blog/post/{post.pk}/change/").content.decode()
    assert f'href="/admin/blog/post/{post.pk}/history/"' in change
    assert "Recover deleted" in client.get("/admin/blog/post/").content.decode()


def test_compare_shows_word_level_tags_and_image_thumbnails(post, client, superuser):
    client.force_login(superuser)
    history = object_history(Post, post.slug)
    a, b = history.versions()
    html = client.get(urls(post)["compare"], {"a": a, "b": b}).content.decode()
    assert "<del>brown</del>" in html and "<ins>red</ins>" in html
    listed = client.get(urls(post)["history"]).content.decode()
    shown = re.findall(r'<td class="when">([^<]+)</td>', listed)  # newest first
    assert re.search(r'id="dbs-compare-a"[^>]*>A: version 1 · <span class="when">' + re.escape(shown[1]), html)
    assert re.search(r'id="dbs-compare-b"[^>]*>B: version 2 · <span class="when">' + re.escape(shown[0]), html)
    assert f">version 2 · {shown[0]}" in html  # the version picker reads the same way
    assert "<del>The quick" not in html  # only the changed word is marked
    assert '<li class="added">+ new</li>' in html and '<li class="removed">− old</li>' in html
    assert html.count('class="dbs-thumb"') == 2
    image = client.get(urls(post)["image"])
    assert image.status_code == 200 and b"".join(image.streaming_content) == png(1)
    assert image["X-Content-Type-Options"] == "nosniff"
    assert client.get("/admin/blog/post/dbs-history/image/" + post.slug + "/../../../etc/passwd").status_code == 404
    assert client.get(urls(post)["compare"], {"a": "nope"}).status_code == 404


def test_restore_preview_writes_nothing_and_confirm_restores(post, client, superuser, media_root,
                                                             django_capture_on_commit_callbacks):
    client.force_login(superuser)
    before = Post.objects.get().content_md
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        html = client.get(urls(post)["restore"]).content.decode()
    assert callbacks == [] and Post.objects.get().content_md == before
    assert "field content_md" in html and "tags +old" in html and 'id="dbs-confirm-restore"' in html
    assert "csrfmiddlewaretoken" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(urls(post)["restore"])
    assert response.status_code == 302 and response["Location"] == urls(post)["history"]
    restored = Post.objects.get()
    assert restored.content_md.startswith("The quick brown fox") and [t.name for t in restored.tags.all()] == ["old"]
    newest = HistoryVersion.objects.order_by("-created_at").first()
    assert newest.username == "root" and newest.summary["restored_from"] == "initial"
    assert len(object_history(Post, post.slug).versions()) == 3
    (event,) = AuditEvent.objects.filter(action="history-restore")  # post restores are in the audit log...
    assert event.username == "root" and event.outcome == "ok" and post.slug in event.object_repr
    audit = client.get("/admin/dbs_admin/auditevent/", {"q": "history-restore"}).content.decode()
    assert audit.count("history-restore</td>") == 1  # ...and the audit search covers the action


def test_csrf_is_required_to_restore(post, superuser):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(urls(post)["restore"]).status_code == 403
    assert Post.objects.get().content_md.startswith("The quick red fox")


def test_recover_deleted_lists_and_brings_back(post, client, superuser, media_root,
                                               django_capture_on_commit_callbacks):
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/blog/post/{post.pk}/delete/", {"post": "yes"})
    assert not Post.objects.exists()
    (media_root / "uploads" / "b.png").unlink()
    html = client.get(urls(post)["deleted"]).content.decode()
    assert post.slug in html and "Hello world" in html
    preview = client.get(urls(post)["recover"]).content.decode()
    assert "create blog.Post" in preview and "write image uploads/b.png" in preview
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(urls(post)["recover"], {"version": object_history(Post, post.slug).versions()[-1]})
    assert response.status_code == 302
    recovered = Post.objects.get(slug=post.slug)
    assert [t.name for t in recovered.tags.all()] == ["new"]
    assert (media_root / "uploads" / "b.png").read_bytes() == png(2)
    assert "No deleted posts with history" in client.get(urls(post)["deleted"]).content.decode()
    (event,) = AuditEvent.objects.filter(action="history-recover")
    assert event.username == "root" and event.outcome == "ok" and post.slug in event.object_repr


def test_lists_are_paginated(eager, make_post, client, superuser, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post()
    for i in range(27):
        with django_capture_on_commit_callbacks(execute=True):
            post.title = f"Title {i}"
            post.save()
    client.force_login(superuser)
    first = client.get(f"/admin/blog/post/{post.pk}/history/").content.decode()
    assert first.count('class="dbs-version"') == 25 and "page 1 of 2" in first
    second = client.get(f"/admin/blog/post/{post.pk}/history/", {"page": 2}).content.decode()
    assert second.count('class="dbs-version"') == 3
    index = client.get("/admin/dbs_admin/historyversion/")
    assert index.status_code == 200 and "28 history versions" in index.content.decode()


def test_image_view_stays_inside_the_objects_folder(post, client, superuser, make_post):
    client.force_login(superuser)
    stored = object_history(Post, post.slug).read("initial")["images"][0]["stored"]
    for url in (f"/admin/blog/post/dbs-history/image/../blog.post/{post.slug}/{stored}",
                f"/admin/blog/post/dbs-history/image/..%2F{post.slug}/{stored}",
                f"/admin/blog/post/dbs-history/image/.lock/{stored}",
                f"/admin/blog/post/dbs-history/image/{post.slug}/post.json/../../../{post.slug}/{stored}"):
        assert client.get(url).status_code == 404, url
