"""Keep the console's own records (``dbs_admin.*``) across a ``--reset`` that drops every table.

Why: the console's tables hold the log of what happened (jobs, audit events,
the backup list, the history index), and a restore run from the console is
itself a Job row. A reset must rebuild the site's schema without erasing
them. Their rows are set aside with the logical capture (field conversion,
constant memory) into a private temporary file, the schema is rebuilt and
restored, and the rows are loaded back; links to rows that no longer exist
(a user the backup does not have) are cleared, as a normal restore does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from django.db import connections

from dbs_admin.backups import logical_capture
from dbs_admin.backups.logical_restore import LogicalRestore, Selection
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.selection import all_storable_models

log = logging.getLogger("dbs_admin.backups")


def console_models() -> list:
    """dbs_admin's own models: the records a restore keeps (jobs, audit log, backup list, history index)."""
    return [m for m in all_storable_models() if m._meta.app_label == "dbs_admin"]


def unlink_missing_sql(qualify: Callable[[str], str] = lambda table: f'"{table}"',
                       quote: Callable[[str], str] = lambda name: f'"{name}"') -> list[str]:
    """SQL that clears (or, for a required link, deletes) kept console rows pointing at rows that are gone.

    Why: after a native restore the site's tables are the backup's while the console's are today's, so a
    job may name a user the backup does not have. A logical restore does the same row by row
    (``logical_restore.unlink_dangling``). ``qualify`` names a table and ``quote`` a column in the caller's
    SQL dialect (SQLite with an attached database: ``main."t"``; MariaDB: backquoted names).
    """
    statements = []
    for model in console_models():
        for f in model._meta.concrete_fields:
            if not f.is_relation or f.related_model._meta.app_label == "dbs_admin":
                continue
            t, other = qualify(model._meta.db_table), qualify(f.related_model._meta.db_table)
            col = quote(f.column)
            where = (f"{t}.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {other} o "
                     f"WHERE o.{quote(f.target_field.column)} = {t}.{col})")
            statements.append(f"UPDATE {t} SET {col} = NULL WHERE {where}" if f.null
                              else f"DELETE FROM {t} WHERE {where}")
    return statements


def set_aside(alias: str, path: Path) -> bool:
    """Write the console's rows to ``path`` (0600); False when its tables are not there to keep."""
    existing = set(connections[alias].introspection.table_names())
    chosen = [m for m in console_models() if m._meta.db_table in existing]
    if len(chosen) != len(console_models()):
        log.warning("the console's tables are incomplete in %s; its records are not kept across the reset", alias)
        return False
    with open(path, "xb") as f, logical_capture.snapshot(alias):
        path.chmod(0o600)
        for piece in logical_capture.stream(alias, head={"format": 1, "kind": "logical"},
                                            reporter=Reporter(None, None), models_=chosen):
            f.write(piece)
    return True


def put_back(alias: str, path: Path) -> list[str]:
    """Load the rows set aside by :func:`set_aside` into the rebuilt database."""
    job = LogicalRestore(alias, Selection(models={m._meta.label_lower for m in console_models()}), dry_run=False,
                         allow_mismatch=False, manifest=None, reporter=Reporter(None, None),
                         unlink_missing=True)
    with open(path, "rb") as f:
        job.run(f)
    return job.changes
