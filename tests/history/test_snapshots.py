"""Versions are written after commit, one per transaction, with tags and deduplicated images."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import transaction

from blog.models import Post
from dbs_admin.history.api import snapshot_queryset
from dbs_admin.history.markdown import parse as parse_markdown
from dbs_admin.history.snapshot import object_history
from dbs_admin.models import HistoryVersion
from dbs_admin.suspend import history_suspended

from .conftest import png, put_image, tag

pytestmark = pytest.mark.django_db


def history(post):
    return object_history(Post, post.slug)


def newest(post) -> dict:
    return history(post).newest()[1]


def test_first_version_holds_every_field_tags_and_images(eager, make_post, media_root,
                                                          django_capture_on_commit_callbacks):
    img = put_image(media_root, "a.png", png(1))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        post = make_post(body=f"Intro\n\n{img}", tags=("django", "backup"))
    h = history(post)
    assert h.versions() == ["initial"]
    data = json.loads((h.dir / "post.json").read_text())
    for field in ("title", "slug", "excerpt", "editor_type", "content_md", "content_html", "status",
                  "created_at", "updated_at", "category", "tags", "images"):
        assert field in data
    assert data["tags"] == ["backup", "django"] and data["category"] == "Meta"
    [image] = data["images"]
    assert image["name"] == "uploads/a.png" and (h.dir / image["stored"]).read_bytes() == png(1)
    assert (h.dir / "post.md").read_text().startswith("---\ntitle: Hello world\n")
    front, body = parse_markdown((h.dir / "post.md").read_text())
    assert front["tags"] == ["backup", "django"] and front["images"] == ["uploads/a.png"]
    assert front["category"] == "Meta" and front["version"] == "initial" and "content_md" not in front
    assert body.startswith("Intro") and "![a.png](/media/uploads/a.png)" in body
    row = HistoryVersion.objects.get()
    assert (row.model_label, row.object_key, row.version_id) == ("blog.post", post.slug, "initial")


def test_update_goes_to_a_microsecond_folder_with_only_new_images(eager, make_post, media_root,
                                                                  django_capture_on_commit_callbacks):
    a, b = put_image(media_root, "a.png", png(1)), put_image(media_root, "b.png", png(2))
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(body=a)
    with django_capture_on_commit_callbacks(execute=True):
        post.content_md = f"{a}\n\n{b}\n\nMore words."
        post.save()
    h = history(post)
    [initial, update] = h.versions()
    assert update.startswith("update_") and len(update) == len("update_2026-01-01_00-00-00_000000")
    folder = h.dir / "updates" / update
    assert sorted(p.name.split("-", 1)[1] for p in (folder / "images").iterdir()) == ["b.png"]
    doc = json.loads((folder / "post.json").read_text())
    assert [i["name"] for i in doc["images"]] == ["uploads/a.png", "uploads/b.png"]
    assert doc["images"][0]["stored"].startswith("images/")  # a.png's bytes live in the first version
    assert doc["_history"]["summary"]["fields"] == ["content_md", "content_html"]
    assert doc["_history"]["summary"]["images"] == {"added": ["uploads/b.png"]}
    assert HistoryVersion.objects.filter(object_key=post.slug).count() == 2


def test_rolled_back_save_writes_no_snapshot(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            post.title = "Never committed"
            post.save()
            post.tags.add(tag("ghost"))
            raise RuntimeError("rollback")
    assert callbacks == []
    assert history(post).versions() == ["initial"]
    # The pending marker of the rolled-back transaction must not swallow the next real save.
    with django_capture_on_commit_callbacks(execute=True):
        post.refresh_from_db()
        post.title = "Committed"
        post.save()
    assert len(history(post).versions()) == 2 and newest(post)["title"] == "Committed"


def test_tag_changes_make_versions_from_either_side(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(tags=("one",))
    with django_capture_on_commit_callbacks(execute=True):
        post.tags.add(tag("two"))
    assert newest(post)["tags"] == ["one", "two"]
    assert newest(post)["_history"]["summary"]["m2m"] == {"tags": {"added": ["two"], "removed": []}}
    with django_capture_on_commit_callbacks(execute=True):
        tag("one").posts.remove(post)  # reverse side
    assert newest(post)["tags"] == ["two"]
    with django_capture_on_commit_callbacks(execute=True):
        tag("two").posts.clear()  # reverse clear: pk_set is unknown after the fact
    assert newest(post)["tags"] == []
    assert len(history(post).versions()) == 4


def test_tags_of_a_new_post_land_in_its_first_version_through_the_admin(
    eager, client, superuser, django_capture_on_commit_callbacks
):
    """The admin saves the post, then the m2m in save_related: one snapshot after both."""
    client.force_login(superuser)
    t1, t2 = tag("alpha"), tag("beta")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/blog/post/add/", {
            "title": "Admin post", "slug": "admin-post", "excerpt": "", "status": "draft", "tags": [t1.pk, t2.pk],
            "editor_type": "markdown", "content_md": "Body", "content_html": "",
            "created_at_0": "2026-01-02", "created_at_1": "10:00:00",
        })
    assert response.status_code == 302, response.content[:2000]
    post = Post.objects.get(slug="admin-post")
    assert history(post).versions() == ["initial"]
    doc = newest(post)
    assert doc["tags"] == ["alpha", "beta"] and doc["_history"]["username"] == "root"


def test_several_changes_in_one_transaction_make_one_version(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        post.title = "Step 1"
        post.save()
        post.tags.add(tag("x"))
        post.title = "Step 2"
        post.save()
    assert len(history(post).versions()) == 2
    assert newest(post)["title"] == "Step 2" and newest(post)["tags"] == ["x"]


def test_save_that_changes_nothing_writes_nothing(eager, make_post, media_root, django_capture_on_commit_callbacks):
    img = put_image(media_root, "a.png", png(1))
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(body=img, tags=("t",))
    before = sorted(p for p in history(post).dir.rglob("*"))
    with django_capture_on_commit_callbacks(execute=True):
        post.save()  # updated_at moves on, nothing else does
        post.tags.set([tag("t")])
    assert history(post).versions() == ["initial"]
    assert sorted(p for p in history(post).dir.rglob("*")) == before
    assert HistoryVersion.objects.count() == 1


def test_renamed_image_is_stored_once_and_replaced_image_is_stored_again(
    eager, make_post, media_root, django_capture_on_commit_callbacks
):
    a = put_image(media_root, "a.png", png(1))
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(body=a)
    renamed = put_image(media_root, "renamed.png", png(1))  # same bytes, new name
    with django_capture_on_commit_callbacks(execute=True):
        post.content_md = renamed
        post.save()
    h = history(post)
    assert len(list(h.dir.rglob("images/*"))) == 1
    assert newest(post)["images"][0]["stored"] == json.loads((h.dir / "post.json").read_text())["images"][0]["stored"]
    put_image(media_root, "renamed.png", png(3))  # different bytes under the old name
    with django_capture_on_commit_callbacks(execute=True):
        post.save()
    assert len(h.versions()) == 3
    stored = sorted(h.dir.rglob("images/*"))
    assert len(stored) == 2 and {p.read_bytes() for p in stored} == {png(1), png(3)}
    assert newest(post)["_history"]["summary"]["images"] == {"changed": ["uploads/renamed.png"]}
    # Every version's json still resolves to its own bytes.
    for version in h.versions():
        for entry in h.read(version)["images"]:
            h.read_image(entry)


def test_two_saves_in_the_same_microsecond_make_two_versions(eager, make_post):
    from dbs_admin.history.collect import capture
    from dbs_admin.history.snapshot import make_payload, take_snapshot

    post = make_post()
    when = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    ids = []
    for title in ("first", "second", "third"):
        Post.objects.filter(pk=post.pk).update(title=title)
        ids.append(take_snapshot(make_payload(Post, post.pk, capture(Post, post.pk)), now=when))
    assert ids == ["initial", "update_2026-05-01_12-00-00_123456", "update_2026-05-01_12-00-00_123457"]
    assert [history(post).read(v)["title"] for v in history(post).versions()] == ["first", "second", "third"]


def test_bulk_update_is_snapshotted_on_request(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        posts = [make_post(title=f"Post {i}") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        Post.objects.update(status="published")  # no signals: no versions
    assert all(len(history(p).versions()) == 1 for p in posts)
    with django_capture_on_commit_callbacks(execute=True):
        assert snapshot_queryset(Post.objects.all()) == 3
    assert all(newest(p)["status"] == "published" for p in posts)


def test_suspended_history_writes_nothing(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, history_suspended():
        post = make_post(tags=("t",))
        post.delete()
    assert callbacks == [] and not history(post).dir.exists()


def test_delete_marks_the_history_deleted_and_keeps_the_last_state(
    eager, make_post, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(tags=("kept",))
    Post.objects.filter(pk=post.pk).update(title="Changed without signals")
    with django_capture_on_commit_callbacks(execute=True):
        Post.objects.filter(pk=post.pk).delete()
    h = history(post)
    assert h.deleted_info() is not None
    assert newest(post)["title"] == "Changed without signals" and newest(post)["tags"] == ["kept"]
    assert set(HistoryVersion.objects.values_list("object_deleted", flat=True)) == {True}


def test_snapshot_is_what_was_saved_not_later_unsaved_edits(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        post.title = "Saved title"
        post.save()
        post.title = "Never saved"
    assert newest(post)["title"] == "Saved title"


def test_save_then_delete_in_one_transaction_keeps_the_state_before_delete(
    eager, make_post, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(tags=("t",))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        post.title = "Last words"
        post.save()
        Post.objects.get(pk=post.pk).delete()
    h = history(post)
    assert len(h.versions()) == 2 and newest(post)["title"] == "Last words" and newest(post)["tags"] == ["t"]
    assert h.deleted_info() is not None


def test_a_plain_save_costs_only_its_order_key(make_post, monkeypatch, django_assert_max_num_queries,
                                              django_capture_on_commit_callbacks, history_root):
    """The request path: the payload comes from memory, tags are read only when the transaction changed them;
    the one addition is the order key drawn from the database (PostgreSQL: nextval; SQLite: a row in and out)."""
    from dbs_admin.history import signals

    sent = []
    monkeypatch.setattr(signals, "send", sent.append)  # stop at the broker's door: we count queries, not messages
    with django_capture_on_commit_callbacks(execute=True):
        created = make_post(tags=("a",))
    assert sent[0]["data"]["tags"] == ["a"] and sent[0]["inherit"] == []  # a creation reads its tags
    post = Post.objects.select_related("category").get(pk=created.pk)
    sent.clear()
    with django_assert_max_num_queries(3) as queries, django_capture_on_commit_callbacks(execute=True):
        post.title = "Cheap"
        post.save()  # the UPDATE and the order key, nothing else
    assert not [q for q in queries.captured_queries if "tags" in q["sql"] or "historyversion" in q["sql"]]
    [payload] = sent
    assert payload["data"]["title"] == "Cheap" and payload["inherit"] == ["tags"] and "tags" not in payload["data"]
    with django_capture_on_commit_callbacks(execute=True):
        post.tags.add(tag("b"))
    assert sent[-1]["data"]["tags"] == ["a", "b"] and sent[-1]["inherit"] == []


def test_inherited_tags_follow_a_late_tag_change(eager, make_post):
    """C (a plain save) reached the worker before B (which changed the tags): C's tags are B's once B lands."""
    from dbs_admin.history.collect import capture
    from dbs_admin.history.snapshot import make_payload, take_snapshot

    post = make_post(tags=("x",))
    t0 = dt.datetime(2026, 7, 1, 9, 0, 0, tzinfo=dt.UTC)

    def payload(title, seconds, tags=None):
        data = {**capture(Post, post.pk), "title": title}
        p = make_payload(Post, post.pk, data, saved_at=t0 + dt.timedelta(seconds=seconds))
        if tags is None:
            del p["data"]["tags"]
            p["inherit"] = ["tags"]
        else:
            p["data"]["tags"] = tags
        return p

    take_snapshot(payload("A", 0, ["x"]))
    take_snapshot(payload("C", 2))  # inherits ["x"] for now
    take_snapshot(payload("D", 3))  # inherits from C
    assert newest(post)["tags"] == ["x"]
    take_snapshot(payload("B", 1, ["x", "y"]))  # the late tag change
    h = history(post)
    docs = [h.read(v) for v in h.versions()]
    assert [(d["title"], d["tags"]) for d in docs] == [("A", ["x"]), ("B", ["x", "y"]), ("C", ["x", "y"]),
                                                      ("D", ["x", "y"])]
    assert docs[2]["_history"]["summary"]["m2m"] == {} and docs[2]["_history"]["summary"]["fields"] == ["title"]
    assert "- y" in (h.version_dir(h.versions()[3]) / "post.md").read_text()


def test_choices_set_in_python_are_stored_as_plain_values(eager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = Post.objects.create(title="Enum", editor_type=Post.EditorType.MARKDOWN, status=Post.Status.PUBLISHED)
    doc = newest(post)
    assert doc["editor_type"] == "markdown" and doc["status"] == "published"
    assert "editor_type: markdown" in (history(post).dir / "post.md").read_text()


def test_an_unreachable_broker_writes_the_snapshot_inline(history_root, make_post, settings, monkeypatch,
                                                          django_capture_on_commit_callbacks, media_root):
    from dbs_admin.jobs.tasks import snapshot_object

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(snapshot_object, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(tags=("t",))
    assert history(post).versions() == ["initial"] and newest(post)["tags"] == ["t"]


def test_partial_save_records_the_row_not_stale_memory(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post()
    stale = Post.objects.get(pk=post.pk)
    Post.objects.filter(pk=post.pk).update(excerpt="Written elsewhere")
    with django_capture_on_commit_callbacks(execute=True):
        stale.status = "published"
        stale.save(update_fields=["status"])
    assert newest(post)["status"] == "published" and newest(post)["excerpt"] == "Written elsewhere"
