"""Shared fixtures: real services (see tests/services.py), a superuser, the browser."""

from __future__ import annotations

import os

import pytest

from tests import services

# Playwright's sync API runs an event loop in the test thread; Django's ORM
# calls made from live-server tests are still synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# Never the keys `make demo` keeps in var/keys: tests configure their own (this process's settings are
# cleaned in pytest_sessionstart; commands and workers the tests start inherit this).
os.environ["DBS_DEMO_KEYS"] = "0"


def pytest_sessionstart(session) -> None:
    """Remove a stale SQLite write-ahead log before the test database is created.

    Backups switch SQLite to WAL (a persistent setting). When a run ends
    abruptly (a killed worker, Ctrl-C) the ``-wal``/``-shm`` files outlive it;
    Django recreates the test database file but not them, and SQLite would
    replay the stale log into the new file ("database disk image is
    malformed"). No connection is open yet at session start.
    """
    from pathlib import Path

    from django.conf import settings

    if getattr(settings, "DEMO_KEYS_LOADED", False):  # pytest run by hand in a checkout where `make demo` ran
        for key in ("RECIPIENTS", "DRILL_IDENTITY"):
            settings.DBS_ADMIN.pop(key, None)
        from dbs_admin.conf import dbs_settings

        dbs_settings.reload()
    default = settings.DATABASES["default"]
    name = str(default.get("TEST", {}).get("NAME") or "")
    if default["ENGINE"].endswith("sqlite3") and name:
        for suffix in ("-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium, never a downloaded browser; flags for a closed network."""
    return {
        **browser_type_launch_args,
        "executable_path": services.chromium_path(),
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ],
    }


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "correct horse battery")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", "staff password", is_staff=True)


@pytest.fixture
def media_root(tmp_path, settings):
    """An empty MEDIA_ROOT per test, so file assertions see only what the test made."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free loopback port for the whole run (tests.services.s3_server)."""
    with services.s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket per test."""
    import secrets

    name = f"dbs-{secrets.token_hex(6)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_storage(settings, s3_server, s3_bucket):
    """Factory: ``STORAGES[alias]`` = django-storages' S3 backend on the moto server; returns the alias.

    ``s3_storage()`` is the alias "backups" on the test's bucket; keywords go to the storage's OPTIONS.
    """

    def make(alias: str = "backups", **options) -> str:
        settings.STORAGES = {
            **settings.STORAGES,
            alias: {"BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": s3_server.storage_options(options.pop("bucket_name", s3_bucket), **options)},
        }
        return alias

    return make
