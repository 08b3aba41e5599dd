"""Two processes writing versions of the same object at once never collide or lose a version."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time

import pytest

from dbs_admin.history.store import ObjectHistory

WRITES = 12
SAME_MOMENT = dt.datetime(2026, 6, 1, 8, 0, 0, tzinfo=dt.UTC)


def _writer(root: str, name: str, image: str) -> None:
    from pathlib import Path

    from dbs_admin.history.collect import ImageFile, sha256_file

    history = ObjectHistory(root, "blog.post", "shared", "post")
    img = ImageFile("uploads/x.png", "html:content_html", Path(image), sha256_file(Path(image)), 5)
    for i in range(WRITES):
        with history.lock():
            # Everyone claims the same instant: the lock plus the bump past the newest keep names unique.
            history.write_version({"title": f"{name}-{i}"}, [img], {"pk": "1"}, f"{name}-{i}\n", now=SAME_MOMENT)


def test_two_processes_never_lose_a_version(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"same image bytes")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), name, str(image))) for name in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    history = ObjectHistory(tmp_path, "blog.post", "shared", "post")
    versions = history.versions()
    assert len(versions) == 2 * WRITES
    titles = [history.read(v)["title"] for v in versions]
    assert sorted(titles) == sorted(f"{n}-{i}" for n in "ab" for i in range(WRITES))
    for name in "ab":  # each writer's own versions stay in its order
        mine = [t for t in titles if t.startswith(name)]
        assert mine == [f"{name}-{i}" for i in range(WRITES)]
    assert len(list(history.dir.rglob("images/*"))) == 1  # the shared image is stored once
    assert not list(history.dir.glob(".tmp-*"))


def test_a_crash_mid_write_leaves_no_half_version(tmp_path):
    history = ObjectHistory(tmp_path, "blog.post", "crash", "post")
    with history.lock():
        history.write_version({"title": "one"}, [], {}, "one\n", now=SAME_MOMENT)
    # What a crash between "temporary folder written" and "renamed into place" leaves behind:
    leftover = history.dir / ".tmp-deadbeef"
    (leftover / "images").mkdir(parents=True)
    (leftover / "post.json").write_text('{"title": "half"}')
    young = history.dir / ".tmp-in-progress"  # maybe another host's write under way: left alone while young
    young.mkdir()
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))  # the crash was an hour ago
    assert history.versions() == ["initial"]
    with history.lock():
        history.write_version({"title": "two"}, [], {}, "two\n", now=SAME_MOMENT)
    assert [history.read(v)["title"] for v in history.versions()] == ["one", "two"]
    assert not leftover.exists() and young.exists()


def _payload(post, title: str, when: dt.datetime, tags=()):
    from blog.models import Post
    from dbs_admin.history.collect import capture
    from dbs_admin.history.snapshot import make_payload

    data = {**capture(Post, post.pk), "title": title, "tags": sorted(tags)}
    return make_payload(Post, post.pk, data, saved_at=when)


def _titles(post):
    from blog.models import Post
    from dbs_admin.history.snapshot import object_history

    h = object_history(Post, post.slug)
    return [h.read(v)["title"] for v in h.versions()], [h.read(v)["_history"]["summary"] for v in h.versions()]


@pytest.mark.django_db
def test_a_snapshot_that_arrives_late_is_put_in_commit_order(eager, make_post):
    from dbs_admin.history.snapshot import take_snapshot
    from dbs_admin.models import HistoryVersion

    post = make_post()
    t = SAME_MOMENT
    for title, seconds, tags in (("A", 0, ["x"]), ("C", 2, ["x", "y"]), ("B", 1, ["x"])):  # B reaches us last
        take_snapshot(_payload(post, title, t + dt.timedelta(seconds=seconds), tags))
    titles, summaries = _titles(post)
    assert titles[-3:] == ["A", "B", "C"]
    assert summaries[-2]["fields"] == ["title"] and summaries[-2]["m2m"] == {}
    assert summaries[-1]["fields"] == ["title"] and summaries[-1]["m2m"] == {"tags": {"added": ["y"], "removed": []}}
    rows = list(HistoryVersion.objects.order_by("created_at").values_list("title", "summary"))
    assert [r[0] for r in rows][-3:] == ["A", "B", "C"] and rows[-1][1] == summaries[-1]


@pytest.mark.django_db
def test_a_creation_that_arrives_after_an_edit_becomes_the_first_version(eager, make_post):
    from blog.models import Post
    from dbs_admin.history.snapshot import object_history, take_snapshot
    from dbs_admin.models import HistoryVersion

    with history_off():
        post = make_post()
    take_snapshot(_payload(post, "Edited", SAME_MOMENT + dt.timedelta(seconds=1)))
    take_snapshot(_payload(post, "Created", SAME_MOMENT))
    titles, summaries = _titles(post)
    assert titles == ["Created", "Edited"]
    assert summaries[0]["created"] and summaries[1]["fields"] == ["title"]
    h = object_history(Post, post.slug)
    assert HistoryVersion.objects.filter(object_key=post.slug).count() == 2
    assert set(HistoryVersion.objects.values_list("version_id", flat=True)) == set(h.versions())


def history_off():
    from dbs_admin.suspend import history_suspended

    return history_suspended()
