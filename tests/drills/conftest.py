"""Fixtures of the drill tests: an isolated DBS_ADMIN (targets, private root, a drill identity), a seeded blog."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbs_admin.sealed import Argon2Params, generate_identity

IDENTITY_PASSPHRASE = "drill identity passphrase"
WEAK = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


@pytest.fixture
def drill_env(settings, tmp_path, media_root, monkeypatch):
    """Backups sealed for a recipient whose identity the drill is configured with (the unattended set-up)."""
    identity_path = tmp_path / "drill.identity"
    identity = generate_identity(identity_path, IDENTITY_PASSPHRASE, argon2=Argon2Params(**WEAK), allow_weak=True)
    settings.DBS_ADMIN = {
        "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "backups")}},
        "PRIVATE_ROOT": str(tmp_path / "private"),
        "HISTORY_ROOT": str(tmp_path / "history"),
        "RECIPIENTS": [identity.recipient],
        "DRILL_IDENTITY": str(identity_path),
        "ARGON2": {**WEAK, "allow_weak": True},
    }
    monkeypatch.setenv("DBS_DRILL_IDENTITY_PASSPHRASE", IDENTITY_PASSPHRASE)
    monkeypatch.delenv("DBS_PASSPHRASE", raising=False)
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return {"tmp": tmp_path, "identity": identity, "identity_path": identity_path, "media": Path(media_root)}


@pytest.fixture
def seeded(drill_env):
    """A small blog: posts (some published), tags, categories and images on disk."""
    from blog.models import Post
    from blog.seeding import seed

    seed(posts=12, images=3, seed=7)
    assert Post.objects.filter(status=Post.Status.PUBLISHED).exists()
    return drill_env


@pytest.fixture
def big_blog(drill_env):
    """A blog large enough to sample from: 120 posts, most of them published."""
    from blog.seeding import seed

    seed(posts=120, images=2, seed=7)
    return drill_env
