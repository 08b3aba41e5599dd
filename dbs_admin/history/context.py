"""Who is saving, and why, for the snapshot a save will produce.

Signal handlers cannot see the request, so the admin (and an optional
middleware for other views) put the acting user in a context variable for the
duration of the request; a restore adds which version it restored. The signal
handler reads both at save time, so the value travels with the snapshot even
though the snapshot is written later by a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_user: ContextVar[Any] = ContextVar("dbs_history_user", default=None)
_restored_from: ContextVar[str | None] = ContextVar("dbs_history_restored_from", default=None)


@contextmanager
def acting_user(user: Any) -> Iterator[None]:
    """Attribute the snapshots of saves made inside the block to ``user`` (anonymous users are ignored)."""
    token = _user.set(user if getattr(user, "is_authenticated", False) else None)
    try:
        yield
    finally:
        _user.reset(token)


@contextmanager
def restoring(version_label: str) -> Iterator[None]:
    """Mark the saves inside the block as a restore of ``version_label`` (shown in the history)."""
    token = _restored_from.set(version_label)
    try:
        yield
    finally:
        _restored_from.reset(token)


def current_user() -> Any:
    return _user.get()


def current_restore() -> str | None:
    return _restored_from.get()


class HistoryUserMiddleware:
    """Optional: attribute snapshots of saves made by any view (not only the admin) to ``request.user``.

    Add ``"dbs_admin.history.context.HistoryUserMiddleware"`` after AuthenticationMiddleware.
    """

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        with acting_user(getattr(request, "user", None)):
            return self.get_response(request)
