"""The real path: save -> on_commit -> Redis -> a separate Celery worker process -> the tree and the index.

The worker runs two prefork processes, so snapshots of the same post are
written concurrently; every committed state must still become its own version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis
from django.db import transaction

from blog.models import Post
from dbs_admin.history.snapshot import object_history
from dbs_admin.models import HistoryVersion
from tests import services

from .conftest import png, put_image, tag

REDIS_DB = 12  # ours alone (team rule: one Redis database per engineer's tests)
EDITS = 6


@pytest.fixture
def redis_broker():
    """The test process sends to our own Redis database; restored afterwards."""
    with services.celery_on_redis(REDIS_DB) as url:
        yield url


@pytest.mark.django_db(transaction=True)
def test_saves_reach_a_real_worker_through_redis(redis_broker, tmp_path, settings, media_root, superuser):
    var = tmp_path / "worker-var"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_ROOT": str(var / "dbs_history")}
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DBS_VAR_DIR=str(var), REDIS_URL=redis_broker, DATABASE_URL=services.shared_database_url(),
               DJANGO_MEDIA_ROOT=str(media_root))
    img = put_image(media_root, "cover.png", png(5))
    from dbs_admin.history.context import acting_user

    with acting_user(superuser), transaction.atomic():  # a new post and its tags: one first version
        post = Post.objects.create(title="Via the broker", content_md=f"Body\n\n{img}")
        post.tags.set([tag("celery"), tag("redis")])
    with transaction.atomic():  # rolled back: must never reach the broker
        Post.objects.filter(pk=post.pk).update(title="never")
        post.title = "rolled back"
        post.save()
        transaction.set_rollback(True)
    for i in range(EDITS):  # quick successive commits, each its own version
        post.title = f"Edit {i}"
        post.save()
    # Nothing was written in-process: the snapshots are messages waiting in Redis.
    assert HistoryVersion.objects.count() == 0
    assert redis.Redis.from_url(redis_broker).llen(services.RUN_QUEUE) == EDITS + 1

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "demo_site", "worker", "--pool", "prefork", "--concurrency", "2",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=services.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and HistoryVersion.objects.count() < EDITS + 1:
            assert worker.poll() is None, f"worker exited early:\n{worker.stdout.read()}"
            time.sleep(0.3)
    finally:
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
    history = object_history(Post, post.slug)
    versions = history.versions()
    assert len(versions) == EDITS + 1, out
    docs = [history.read(v) for v in versions]
    assert docs[0]["title"] == "Via the broker" and docs[0]["tags"] == ["celery", "redis"]
    assert docs[0]["_history"]["username"] == "root"
    assert [d["title"] for d in docs[1:]] == [f"Edit {i}" for i in range(EDITS)]  # commit order, whoever ran first
    assert "rolled back" not in {d["title"] for d in docs}
    assert all(d["tags"] == ["celery", "redis"] for d in docs), [d["tags"] for d in docs]  # saves inherit the tags
    assert history.read_image(docs[-1]["images"][0]) == png(5)
    assert len(list(history.dir.rglob("images/*"))) == 1
    assert HistoryVersion.objects.filter(object_key=post.slug).count() == EDITS + 1
