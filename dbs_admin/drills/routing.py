"""Point the ORM at the scratch database for a block of code, without touching the site's routers.

Smoke checks call the project's own views and templates, which query
through the default managers. Rewriting them to pass ``using()`` is not
possible, so while :func:`reading_from` is active a router placed first in
Django's router chain sends every read and write to the scratch alias. A
context variable keeps the switch local to the thread running the drill:
requests served meanwhile by other threads still see the real database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import router

_alias: ContextVar[str | None] = ContextVar("dbs_admin_drill_alias", default=None)


class ScratchRouter:
    """Sends everything to the active scratch alias; stays silent (None) outside :func:`reading_from`."""

    def db_for_read(self, model, **hints):
        return _alias.get()

    def db_for_write(self, model, **hints):
        return _alias.get()

    def allow_relation(self, obj1, obj2, **hints):
        return True if _alias.get() else None


_ROUTER = ScratchRouter()


def _install() -> None:
    # ``router.routers`` is a cached list built from DATABASE_ROUTERS; it is
    # rebuilt when that setting changes, so check on every use.
    routers = router.routers
    if not routers or routers[0] is not _ROUTER:
        if _ROUTER in routers:
            routers.remove(_ROUTER)
        routers.insert(0, _ROUTER)


@contextmanager
def reading_from(alias: str) -> Iterator[str]:
    """Route every ORM query made in this context (and thread) to ``alias``."""
    _install()
    token = _alias.set(alias)
    try:
        yield alias
    finally:
        _alias.reset(token)
