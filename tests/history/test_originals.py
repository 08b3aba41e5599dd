"""History never loses an original: objects that existed before history was tracked, versions in commit order,
content captured at commit, a first version written by two processes at once."""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import nullcontext

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from blog.models import Post
from dbs_admin.history import signals
from dbs_admin.history.revert import restore
from dbs_admin.history.snapshot import object_history, take_snapshot
from dbs_admin.history.store import ObjectHistory
from dbs_admin.models import HistoryVersion
from dbs_admin.suspend import history_suspended

from .conftest import tag


def versions(post) -> list[dict]:
    h = object_history(Post, post.slug)
    return [h.read(v) for v in h.versions()]


def untracked(make_post, **kwargs) -> Post:
    """A post that existed before history was tracked (seeded demo posts; a project adding dbs_admin later)."""
    with history_suspended():
        return make_post(**kwargs)


@pytest.mark.django_db
def test_the_first_edit_of_an_existing_post_keeps_its_original(eager, make_post,
                                                              django_capture_on_commit_callbacks):
    post = untracked(make_post, title="Original", body="The original text.", tags=("old",))
    with django_capture_on_commit_callbacks(execute=True):
        post.content_md = "Edited text."
        post.save()
    first, second = versions(post)
    assert first["content_md"] == "The original text." and first["tags"] == ["old"]
    assert first["_history"]["summary"]["baseline"] is True
    assert second["content_md"] == "Edited text." and second["tags"] == ["old"]
    assert second["_history"]["summary"]["fields"] == ["content_md", "content_html"]
    # ... and the original is restorable
    plan, _ = restore(Post, post.slug, "initial")
    assert Post.objects.get(pk=post.pk).content_md == "The original text."
    assert "field content_md: 'Edited text.' -> 'The original text.'" in plan.lines()


@pytest.mark.django_db
def test_a_tag_change_of_an_existing_post_keeps_its_original_tags(eager, make_post,
                                                                 django_capture_on_commit_callbacks):
    post = untracked(make_post, tags=("old",))
    with django_capture_on_commit_callbacks(execute=True):
        post.tags.add(tag("new"))
    assert [v["tags"] for v in versions(post)] == [["old"], ["new", "old"]]
    untagged = untracked(make_post, title="Reverse side", tags=("shared",))
    with django_capture_on_commit_callbacks(execute=True):
        tag("shared").posts.clear()  # from the tag's side
    assert [v["tags"] for v in versions(untagged)] == [["shared"], []]


@pytest.mark.django_db
def test_dbs_history_snapshot_takes_a_baseline_once(eager, make_post, django_capture_on_commit_callbacks, capsys):
    posts = [untracked(make_post, title=f"Old {i}", body=f"Body {i}") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        tracked = make_post(title="Tracked")
    call_command("dbs_history", "snapshot", "--model", "blog.Post")
    assert "blog.post: 3 object(s) without a version got their first one" in capsys.readouterr().out
    assert all(len(versions(p)) == 1 for p in posts) and len(versions(tracked)) == 1
    call_command("dbs_history", "snapshot")
    assert "blog.post: 0 object(s)" in capsys.readouterr().out
    with django_capture_on_commit_callbacks(execute=True):
        posts[0].title = "Old 0, edited"
        posts[0].save()
    assert [v["title"] for v in versions(posts[0])] == ["Old 0", "Old 0, edited"]  # no second baseline


@pytest.mark.django_db
def test_each_version_is_what_its_transaction_committed(history_root, media_root, make_post, monkeypatch,
                                                       django_capture_on_commit_callbacks):
    """The issue's case: a plain save queued for a worker, a tag added by a later transaction before the worker
    ran. The first version must not show the tag, and the tag change must get a version of its own."""
    post = untracked(make_post, title="Before", tags=("a",))
    sent: list[dict] = []
    monkeypatch.setattr(signals, "send", sent.append)  # the worker is busy: messages wait
    with django_capture_on_commit_callbacks(execute=True):
        post.title = "Retitled"
        post.save()
    with django_capture_on_commit_callbacks(execute=True):
        post.tags.add(tag("b"))
    for payload in sent:  # now the worker runs them
        take_snapshot(payload)
    assert [(v["title"], v["tags"]) for v in versions(post)] == [
        ("Before", ["a"]), ("Retitled", ["a"]), ("Retitled", ["a", "b"])]


@pytest.mark.django_db
def test_versions_follow_the_order_keys_not_the_hosts_clocks(eager, make_post, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    """Two web hosts: the first commit's host runs an hour ahead and its message reaches the worker last."""
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(title="Created")
    sent: list[dict] = []
    monkeypatch.setattr(signals, "send", sent.append)
    for title in ("First", "Second"):
        with django_capture_on_commit_callbacks(execute=True):
            post.title = title
            post.save()
    first, second = sent
    ahead = dt.datetime.fromisoformat(first["saved_at"]) + dt.timedelta(hours=1)
    first["saved_at"] = ahead.isoformat()  # its host's clock
    assert first["order"] < second["order"]
    take_snapshot(second)
    take_snapshot(first)
    assert [v["title"] for v in versions(post)] == ["Created", "First", "Second"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_one_object_draw_keys_in_commit_order(history_root, media_root, make_post, monkeypatch):
    """The key is drawn after the row is written: a second transaction waits for the first's lock, so it draws a
    larger key, whichever process runs its on-commit callback first."""
    post = make_post(title="Start")
    mine = {name: Post.objects.get(pk=post.pk) for name in ("One", "Two")}  # read before: SQLite (WAL) refuses
    sent: list[dict] = []                                                    # a write after a stale read
    lock = threading.Lock()

    def collect(payload):
        with lock:
            sent.append(payload)

    monkeypatch.setattr(signals, "send", collect)
    first_wrote, errors = threading.Event(), []

    def first():
        try:
            with transaction.atomic():
                p = mine["One"]
                p.title = "One"
                p.save()  # row written (and locked) and the key drawn
                first_wrote.set()
                threading.Event().wait(0.8)  # the second transaction now waits for this one
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    def second():
        try:
            first_wrote.wait(10)
            with transaction.atomic():
                p = mine["Two"]
                p.title = "Two"
                p.save()  # waits for the first transaction's lock
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    by_title = {p["data"]["title"]: p for p in sent if not p.get("baseline")}
    assert by_title["One"]["order"] < by_title["Two"]["order"]
    for payload in sorted(sent, key=lambda p: p["order"], reverse=True):  # worst case: newest first
        take_snapshot(payload)
    assert [v["title"] for v in versions(post)][-2:] == ["One", "Two"]
    assert Post.objects.get(pk=post.pk).title == "Two"


@pytest.mark.django_db(transaction=True)
def test_two_processes_writing_the_first_version_at_once_lose_nothing(history_root, media_root, make_post,
                                                                     monkeypatch):
    """Hosts sharing the tree without a working lock: both try to publish 'initial' at the same moment. One wins,
    the other becomes the next version; the index has a row for each version on disk."""
    post = untracked(make_post, title="Shared")
    payloads = []
    for title in ("From host A", "From host B"):
        with transaction.atomic():
            payload = signals.capture_now(Post, post.pk)
        payload["data"]["title"] = title
        payloads.append(payload)
    monkeypatch.setattr(ObjectHistory, "lock", lambda self: nullcontext())
    both_ready = threading.Barrier(2, timeout=20)
    publish = ObjectHistory._publish_initial

    def racing_publish(self, tmp):
        both_ready.wait()
        return publish(self, tmp)

    monkeypatch.setattr(ObjectHistory, "_publish_initial", racing_publish)
    errors = []

    def write(payload):
        try:
            take_snapshot(payload)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    h = object_history(Post, post.slug)
    on_disk = {v: h.read(v)["title"] for v in h.versions()}
    assert sorted(on_disk.values()) == ["From host A", "From host B"] and "initial" in on_disk
    rows = dict(HistoryVersion.objects.filter(object_key=post.slug).values_list("version_id", "title"))
    assert rows == on_disk


@pytest.mark.django_db
def test_the_index_mends_itself_from_the_tree(eager, make_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(title="Indexed")
    HistoryVersion.objects.filter(version_id="initial").update(title="stale")
    with django_capture_on_commit_callbacks(execute=True):
        post.title = "Indexed again"
        post.save()
    HistoryVersion.objects.filter(version_id="initial").delete()  # a worker died between the tree and the index
    with django_capture_on_commit_callbacks(execute=True):
        post.title = "And again"
        post.save()
    h = object_history(Post, post.slug)
    rows = dict(HistoryVersion.objects.filter(object_key=post.slug).values_list("version_id", "title"))
    assert rows == {v: h.read(v)["title"] for v in h.versions()} and len(rows) == 3


@pytest.mark.django_db(transaction=True)
def test_plain_saves_that_reach_the_worker_before_the_creation_get_its_tags(history_root, media_root, monkeypatch):
    """Two worker processes: the edits' snapshots (tags untouched, so inherited) can be written before the
    creation's. Once the creation is put first, every edit carries its tags (they were empty for good)."""
    sent: list[dict] = []
    monkeypatch.setattr(signals, "send", sent.append)
    with transaction.atomic():
        post = Post.objects.create(title="Created", slug="created-late")
        post.tags.set([tag("celery"), tag("redis")])
    for title in ("Edit 1", "Edit 2", "Edit 3"):
        post.title = title
        post.save()
    creation, *edits = sent
    assert "tags" in creation["data"] and all("tags" not in p["data"] for p in edits)
    for payload in [edits[1], edits[0], creation, edits[2]]:  # the worst orders two processes can produce
        take_snapshot(payload)
    got = versions(post)
    assert [v["title"] for v in got] == ["Created", "Edit 1", "Edit 2", "Edit 3"]
    assert [v["tags"] for v in got] == [["celery", "redis"]] * 4
