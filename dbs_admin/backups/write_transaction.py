"""The one write transaction of a restore, which on SQLite takes the write lock when it begins.

Why: SQLite's default ``BEGIN`` is deferred. A restore's transaction first reads (content types to
re-link, existing keys) and only then writes. In WAL mode, if any other connection commits in between (the
site itself, or the job's own progress writer on its companion connection), the upgrade from reader to
writer fails at once with "database is locked": SQLite cannot wait, because the restore's snapshot is
already stale, so the busy timeout never applies. ``BEGIN IMMEDIATE`` takes the write lock first (waiting
up to the busy timeout for a writer that holds it), after which nothing can slip in between. Other engines
lock rows as they go and need nothing here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction


@contextmanager
def write_transaction(alias: str) -> Iterator[None]:
    """``transaction.atomic(using=alias)``, begun with ``BEGIN IMMEDIATE`` on SQLite (no effect when nested)."""
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic(using=alias):
            yield
        return
    connection.ensure_connection()  # the mode is read from the settings when connecting: set it after that
    mode = connection.transaction_mode
    connection.transaction_mode = "IMMEDIATE"
    try:
        atomic = transaction.atomic(using=alias)
        atomic.__enter__()
    finally:
        connection.transaction_mode = mode
    try:
        yield
    except BaseException as exc:
        if not atomic.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        atomic.__exit__(None, None, None)
