"""Shared fixtures: real services (see tests/services.py), a superuser, the browser."""

from __future__ import annotations

import os

import pytest

from tests import services

# Playwright's sync API runs an event loop in the test thread; Django's ORM
# calls made from live-server tests are still synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


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
