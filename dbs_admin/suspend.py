"""A switch that bulk operations (restores) use to keep history snapshots quiet.

A restore of 20,000 posts must not enqueue 20,000 snapshot tasks: the restore
wraps its loading in :func:`history_suspended`, and the history signal
handlers ask :func:`history_is_suspended` first. A context variable keeps the
switch local to the thread or task doing the restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_suspended: ContextVar[bool] = ContextVar("dbs_admin_history_suspended", default=False)


@contextmanager
def history_suspended() -> Iterator[None]:
    token = _suspended.set(True)
    try:
        yield
    finally:
        _suspended.reset(token)


def history_is_suspended() -> bool:
    return _suspended.get()
