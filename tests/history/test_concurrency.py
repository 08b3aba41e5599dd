"""Two processes writing versions of the same object at once never collide or lose a version."""

from __future__ import annotations

import datetime as dt
import multiprocessing

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
    assert history.versions() == ["initial"]
    with history.lock():
        history.write_version({"title": "two"}, [], {}, "two\n", now=SAME_MOMENT)
    assert [history.read(v)["title"] for v in history.versions()] == ["one", "two"]
    assert not leftover.exists()
