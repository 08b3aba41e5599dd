"""Order keys of versions: drawn from the database while the saving transaction holds the object's row.

Why not a clock: web processes on several hosts disagree about the time, and
a process can be paused between its commit and its on-commit callback, so
neither "when the save ran" nor "when the callback ran" orders two saves of
one object the way the database committed them. What does: a number the
database hands out *after* the transaction wrote the object's row (a save's
UPDATE, or the row locked by ``SELECT ... FOR UPDATE`` before a tag change):
a concurrent save of the same object blocks on that row until this one
commits, so it draws a larger number. The worker then puts versions in this
order, whenever their snapshots reach it.

- PostgreSQL: ``nextval`` of ``HistoryTick``'s own sequence (no row is
  written, no lock is taken: sequences are not transactional), with the
  server's ``clock_timestamp()`` as the time shown for the version.
- Other engines: a ``HistoryTick`` row inserted and deleted in the saving
  transaction. SQLite lets one transaction write at a time, so its ids follow
  commit order; AUTOINCREMENT never reuses one. Its time is this host's
  clock, the database's own host.

A key is ``[tick, sub]``: ``sub`` 0 is the state an object had before its
first tracked save (its baseline), 1 the state the transaction committed.
"""

from __future__ import annotations

import datetime as dt

from django.db import connections

from dbs_admin.models import HistoryTick

BASELINE, COMMITTED = 0, 1


def draw(using: str) -> tuple[int, dt.datetime]:
    """A new tick and the database's time, from the connection ``using`` (inside its current transaction)."""
    connection = connections[using]
    manager = HistoryTick.objects.using(using)
    if connection.vendor == "postgresql":
        table = HistoryTick._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')), clock_timestamp()", [table])
            tick, at = cursor.fetchone()
        return int(tick), at.astimezone(dt.UTC)
    row = manager.create()
    manager.filter(pk=row.pk).delete()
    return int(row.pk), dt.datetime.now(dt.UTC)


def key(document_meta: dict) -> tuple[int, int] | None:
    """The order key recorded in a version's ``_history`` (None: written before keys existed, or imported)."""
    value = document_meta.get("order")
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None
