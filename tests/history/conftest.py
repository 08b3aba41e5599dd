"""Fixtures of the history tests: a history root per test, snapshots run in-process, posts with images."""

from __future__ import annotations

import io
import random

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from blog.models import Category, Post, Tag


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users are made in most tests; the production hasher would spend seconds on each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def history_root(tmp_path, settings):
    root = tmp_path / "history"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_ROOT": str(root)}
    return root


@pytest.fixture
def eager(history_root, media_root):
    """The snapshot task runs in-process, right in the on_commit callback (tests about the store)."""
    from demo_site.celery import app

    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield history_root
    app.conf.task_always_eager, app.conf.task_eager_propagates = False, False


def png(seed: int, size: int = 32) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def put_image(media_root, name: str, data: bytes) -> str:
    """Write ``uploads/<name>`` under MEDIA_ROOT; returns the <img> tag a post uses."""
    path = media_root / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"![{name}](/media/uploads/{name})"


@pytest.fixture
def make_post(db):
    def make(title: str = "Hello world", body: str = "First body.", tags: tuple[str, ...] = (), **extra) -> Post:
        category, _ = Category.objects.get_or_create(name="Meta", defaults={"slug": "meta"})
        post = Post.objects.create(title=title, content_md=body, category=category, **extra)
        for name in tags:
            tag, _ = Tag.objects.get_or_create(name=name, defaults={"slug": name})
            post.tags.add(tag)
        return post

    return make


def tag(name: str) -> Tag:
    return Tag.objects.get_or_create(name=name, defaults={"slug": name})[0]


__all__ = ["ContentFile", "png", "put_image", "tag"]
