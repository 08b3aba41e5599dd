"""Secondary indexes set aside for a bulk load and rebuilt, overlapping the work that follows the rows.

SQLite and PostgreSQL (what ``pg_restore`` does: data first, indexes after).
Why: building an index from loaded rows is much faster than updating it row
by row in random key order, and DDL is transactional in both, so a failed
restore rolls the indexes back with everything else. Rebuilding is one long
statement per index, which releases the GIL: it runs on a helper
thread, on the same connection and inside the same transaction, while the
restoring thread receives and hash-checks the media files (which do not touch
the database). Before anything else uses the connection, :meth:`finish` (or
:meth:`abandon` on the error path) waits for the helper; a helper error (a
duplicate value for a unique index, say) is raised there as Django's own
database error, so it rolls everything back like any other.

Unique constraints declared in the table itself (no SQL of their own) stay in
place during the load; on PostgreSQL so do primary keys, unique constraints and
every index a constraint uses (a foreign key's target). PostgreSQL refuses to drop
or create an index on a table with pending (deferred) foreign-key checks: indexes
are set aside before the table's old rows are deleted, and built again (on the
restoring thread) once the restore has run those checks.
"""

from __future__ import annotations

import threading


class IndexesAside:
    def __init__(self, connection) -> None:
        self.connection = connection
        self._sql: list[str] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None

    def set_aside(self, table: str, cursor) -> None:
        """Drop ``table``'s secondary indexes (SQLite, PostgreSQL), remembering how to build them again."""
        vendor = self.connection.vendor
        if vendor == "sqlite":
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                           "AND sql IS NOT NULL", [table])
        elif vendor == "postgresql":
            cursor.execute(
                "SELECT ic.relname, pg_get_indexdef(ix.indexrelid) FROM pg_index ix "
                "JOIN pg_class ic ON ic.oid = ix.indexrelid "
                "WHERE ix.indrelid = %s::regclass AND NOT ix.indisprimary "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) "
                "ORDER BY ic.relname", [self.connection.ops.quote_name(table)])
        else:
            return
        for name, sql in cursor.fetchall():
            self._sql.append(sql)
            cursor.execute(f"DROP INDEX {self.connection.ops.quote_name(name)}")

    def rebuild_in_background(self) -> None:
        """Start rebuilding; the caller must not use the connection until :meth:`finish` or :meth:`abandon`."""
        if not self._sql or self._thread is not None or self.connection.vendor != "sqlite":
            return  # PostgreSQL: not while foreign-key checks are pending; finish() builds them after the check
        raw = self.connection.connection  # the DB-API connection: Django's wrapper belongs to the calling thread
        statements, self._sql = self._sql, []

        def build() -> None:
            try:
                for sql in statements:
                    if self._stop.is_set():
                        return
                    raw.execute(sql)
            except BaseException as exc:  # noqa: BLE001 - raised on the restoring thread by finish()
                self._error = exc

        self._thread = threading.Thread(target=build, name="dbs-indexes", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Every index is back (built here if no helper ran), or the helper's error is raised."""
        if self._thread is None:
            with self.connection.cursor() as cursor:
                for sql in self._sql:
                    cursor.execute(sql)
            self._sql = []
            return
        self._thread.join()
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            with self.connection.wrap_database_errors:  # sqlite3.IntegrityError -> django.db.IntegrityError
                raise error

    def abandon(self) -> None:
        """Error path: stop after the index being built and wait, so the rollback has the connection alone."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
