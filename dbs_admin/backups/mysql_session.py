"""What a MariaDB/MySQL session must be for rows to travel exactly, and one line for what it cannot carry.

Why: MariaDB quietly stores something other than what it was given unless
the session says otherwise. A 3-byte ``utf8`` connection turns an emoji into
``?``; a lax ``sql_mode`` truncates a too-long value or a bad date into
something else with a warning nobody reads; an explicit id of 0 in an
AUTO_INCREMENT column gets a new number. So every backup and restore runs
in a session with utf8mb4 and one fixed, strict ``sql_mode``, and the
session is put back as it was afterwards (Django reuses connections).

What MariaDB holds and no other engine can (zero dates), what cannot be
rolled back (MyISAM and other non-transactional tables), and the errors a
load can meet (a collation that makes two keys equal, 4-byte text in a
3-byte table) are refused with one line that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, models

from dbs_admin.backups.errors import BackupError, RestoreError

EXACT_SQL_MODE = ("STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
                  "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION")
"""Strict for every table, no zero dates, an explicit 0 id kept, and nothing else that changes what is read or
written (no ANSI_QUOTES, PAD_CHAR_TO_FULL_LENGTH or NO_BACKSLASH_ESCAPES, which the driver's escaping assumes)."""

TRANSACTIONAL_ENGINES = {"InnoDB"}

DUPLICATE_KEY, INCORRECT_STRING = 1062, 1366  # MariaDB error numbers


def is_mysql(connection) -> bool:
    return connection.vendor == "mysql"


@contextmanager
def exact_session(connection) -> Iterator[None]:
    """utf8mb4 and :data:`EXACT_SQL_MODE` on a MariaDB connection for the block; a no-op on other engines."""
    if not is_mysql(connection):
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    charset = raw.character_set_name()
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.sql_mode")
        mode = cursor.fetchone()[0]
        raw.set_character_set("utf8mb4")
        cursor.execute("SET SESSION sql_mode = %s", [EXACT_SQL_MODE])
    try:
        yield
    finally:
        if connection.connection is raw:  # not closed meanwhile (a closed connection starts afresh anyway)
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION sql_mode = %s", [mode])
            raw.set_character_set(charset)


@contextmanager
def foreign_key_checks_off(connection) -> Iterator[None]:
    """MariaDB cannot defer foreign-key checks to the commit: they are off while rows load (the restore then
    checks every key itself, ``check_constraints``) and on again afterwards, whatever the outcome."""
    if not is_mysql(connection):
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION foreign_key_checks = 0")
    try:
        yield
    finally:
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION foreign_key_checks = 1")


def _tables(connection, tables: Iterable[str]) -> list[tuple[str, str]]:
    wanted = sorted(set(tables))
    if not wanted:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME IN ({', '.join(['%s'] * len(wanted))})", wanted)
        return list(cursor.fetchall())


def refuse_non_transactional(connection, tables: Iterable[str], *, error: type[BackupError] = RestoreError) -> None:
    """Refuse tables whose engine cannot roll back (MyISAM, Aria...): neither a snapshot nor all-or-nothing."""
    if not is_mysql(connection):
        return
    other = [f"{t} ({engine})" for t, engine in _tables(connection, tables) if engine not in TRANSACTIONAL_ENGINES]
    if other:
        raise error(f"table(s) {', '.join(other[:5])} use a storage engine without transactions, so no consistent "
                    "snapshot or all-or-nothing restore is possible; convert them: ALTER TABLE ... ENGINE=InnoDB")


def refuse_zero_dates(connection, chosen: Iterable[type[models.Model]]) -> None:
    """Refuse a logical backup of zero dates (``0000-00-00``, ``2024-00-10``): the driver reads them as None, and
    no other engine can hold them, so they could only come back as something else."""
    if not is_mysql(connection):
        return
    qn = connection.ops.quote_name
    found = []
    with connection.cursor() as cursor:
        for model in chosen:
            for f in model._meta.concrete_fields:
                if f.get_internal_type() not in ("DateField", "DateTimeField"):
                    continue
                col = qn(f.column)
                cursor.execute(f"SELECT COUNT(*) FROM {qn(model._meta.db_table)} WHERE {col} IS NOT NULL AND "
                               f"(MONTH({col}) = 0 OR DAYOFMONTH({col}) = 0)")
                if n := cursor.fetchone()[0]:
                    found.append(f"{model._meta.label}.{f.name} ({n} row(s))")
    if found:
        raise BackupError(f"zero dates (0000-00-00) in {', '.join(found[:5])} cannot be carried by a logical backup "
                          "(no other engine has them, and Django reads them as empty); set them to NULL or a real "
                          "date, or take a native backup")


def explain(exc: DatabaseError) -> str | None:
    """One line for the MariaDB errors a load of good rows can still meet, or None."""
    args = getattr(exc.__cause__, "args", None) or exc.args
    code = args[0] if args and isinstance(args[0], int) else None
    text = " ".join(str(args[1] if len(args) > 1 else exc).split())[:200]
    if code == DUPLICATE_KEY:
        return (f"two restored rows, or a restored row and a row kept in place, have the same key in MariaDB ({text}); "
                "its case- and accent-insensitive collations count values that differ only in letter case, accents "
                "or trailing spaces as equal. Make them distinct, or give the column a binary collation (utf8mb4_bin)")
    if code == INCORRECT_STRING:
        return (f"MariaDB cannot store some of the restored text ({text}): 4-byte UTF-8 (emoji, say) needs the "
                "utf8mb4 character set; convert the table (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4)")
    return None
