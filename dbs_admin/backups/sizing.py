"""How many bytes a backup's stages will move, estimated before they start, so one bar can move by bytes.

Why estimates: a job's bar is shared by its stages (``jobs.progress_plan``) and each stage's share should be
its part of the work. The database part and the media part of a site differ by orders of magnitude from one
site to the next (a 2 GB database with no uploads, a 20 MB one with 10 GB of images), so fixed shares made
the bar race through one part and crawl through the other. Here each part is sized by what the engine and
the file system already know, cheaply (no row or file is read):

- the database: the engine's own figure for its tables' data (SQLite's pages, PostgreSQL's
  ``pg_table_size``, InnoDB's ``data_length``);
- a native dump, whose size is only known when it ends: the previous native backup's dump of the same
  engine (what the manifest recorded), else the tables' data size;
- media: the files' sizes from ``stat``.

The services send the estimate as the ``SIZING`` stage: ``progress(SIZING, database_bytes,
database_bytes + media_bytes)``. Nothing depends on an estimate being right: a stage that runs past its
estimate holds its bar at its share's end until the next stage starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from dbs_admin.models import Backup

log = logging.getLogger("dbs_admin.backups")

SIZING = "sizing"  # progress(SIZING, database part, database part + media part)


def database_bytes(alias: str) -> int | None:
    """The engine's figure for the size of the database's table data, or None when it cannot tell."""
    connection = connections[alias]
    vendor = connection.vendor
    queries = {
        "sqlite": "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        "postgresql": "SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                      "AND n.nspname NOT LIKE 'pg_toast%%'",
        "mysql": "SELECT sum(data_length) FROM information_schema.tables WHERE table_schema = DATABASE()",
    }
    if vendor not in queries:
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(queries[vendor])
            row = cursor.fetchone()
    except DatabaseError as exc:  # a restricted role may not see the catalogue: the bar keeps its fixed shares
        log.debug("no database size for progress: %s", exc)
        return None
    return int(row[0]) if row and row[0] else None


def previous_dump_bytes(engine: str) -> int | None:
    """The dump size the newest native backup of ``engine`` recorded: the best guess of the next one's."""
    for manifest in (Backup.objects.filter(kind="native", engine=engine).order_by("-created_at")
                     .values_list("manifest", flat=True)[:5]):
        size = ((manifest or {}).get("dump") or {}).get("size")
        if isinstance(size, int) and size > 0:
            return size
    return None


def dump_bytes(alias: str) -> int | None:
    """The expected size of a native dump of ``alias``: the last one's, else the tables' data size."""
    return previous_dump_bytes(connections[alias].vendor) or database_bytes(alias)


def media_sizes(entries: list[tuple[str, str, Path | None]]) -> list[int]:
    """Sizes of ``native.media_files()`` entries: ``stat`` of local files; ``-1`` for a storage's (unknown
    without a request per file)."""
    return [_stat_size(path) if path is not None else -1 for _, _, path in entries]


def _stat_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def announce(reporter: Any, database_part: int | None, media_part: int) -> None:
    """Send the SIZING estimate (nothing when the database part is unknown: the bar keeps its fixed shares)."""
    if database_part is not None and database_part + media_part > 0:
        reporter.report(SIZING, database_part, database_part + media_part, force=True)


def listed_file_bytes(manifest: dict | None) -> int:
    """The bytes of the files a backup's manifest lists (``file_sha256`` rows: root, name, size, sha256)."""
    listed = (manifest or {}).get("file_sha256") or []
    return sum(e[2] for e in listed if len(e) > 2 and isinstance(e[2], int))


def listed_dump_bytes(manifest: dict | None) -> int | None:
    """The size of the native dump a backup's manifest records, or None."""
    size = ((manifest or {}).get("dump") or {}).get("size")
    return size if isinstance(size, int) and size > 0 else None


def file_bytes(sizes: list[int]) -> int:
    """The bytes of files whose sizes are known (``-1``: unknown, e.g. in a remote storage, counted as the
    average of the known ones, so a share still exists for them)."""
    known = [s for s in sizes if s >= 0]
    average = sum(known) // len(known) if known else 0
    return sum(s if s >= 0 else average for s in sizes)
