"""Logical capture: every carried model's rows, then the files they name, as a payload stream.

Why keyset pagination inside one read transaction: ``WHERE pk > last ORDER BY
pk LIMIT n`` costs the same for the last batch as for the first and never
holds a table in memory, and the surrounding transaction (REPEATABLE READ on
PostgreSQL, a consistent InnoDB snapshot on MariaDB, a WAL read transaction
on SQLite) makes every batch see the same instant even while the site keeps
writing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import F, Func, TextField

from dbs_admin.backups import files_cache, mysql_session, payload, sizing, storage_media
from dbs_admin.backups.errors import BackupError, UnsafePathError
from dbs_admin.backups.files import clean_name, file_roots, locate, safe_path
from dbs_admin.backups.native import media_files
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.selection import backed_up_models, columns, encoder, file_columns, ref_models
from dbs_admin.conf import dbs_settings
from dbs_admin.registry import FieldKind

log = logging.getLogger("dbs_admin.backups")


def ensure_wal(alias: str) -> None:
    """Switch a SQLite database to WAL so a long backup read never blocks the site's writes.

    WAL is persistent and is SQLite's recommended mode for a web site; it is
    only changed outside a transaction and never for in-memory databases.
    """
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
        if mode.lower() not in ("wal", "memory"):
            cursor.execute("PRAGMA journal_mode=WAL")
            log.info("switched SQLite database %s to WAL journal mode for consistent online backups", alias)


@contextmanager
def snapshot(alias: str) -> Iterator[None]:
    """One read transaction every query of the backup runs in.

    PostgreSQL: REPEATABLE READ. MariaDB: REPEATABLE READ with a consistent
    snapshot taken at once (InnoDB would otherwise take it at the first read),
    in a utf8mb4 session (see mysql_session.py).
    """
    ensure_wal(alias)
    connection = connections[alias]
    outer = connection.in_atomic_block
    with mysql_session.exact_session(connection), transaction.atomic(using=alias):
        if not outer:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                elif connection.vendor == "mysql":
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        yield


def count_rows(alias: str) -> dict[str, int]:
    """Rows per carried model, counted inside the current snapshot."""
    return {m._meta.label: m._base_manager.using(alias).count() for m in backed_up_models()}


def count_file_references(alias: str) -> int:
    total = 0
    for model in backed_up_models():
        for col in file_columns(model):
            total += (
                model._base_manager.using(alias)
                .exclude(**{f"{col.attname}__isnull": True}).exclude(**{col.attname: ""}).count()
            )
    return total


def references(alias: str) -> dict[str, list[list[Any]]]:
    """Content types and permissions with their ids in this database, re-linked by natural key on restore."""
    out: dict[str, list[list[Any]]] = {"contenttypes": [], "permissions": []}
    for model in ref_models():
        if model._meta.label == "contenttypes.ContentType":
            out["contenttypes"] = [list(r) for r in model.objects.using(alias).values_list("id", "app_label", "model")]
        else:
            out["permissions"] = [
                list(r) for r in model.objects.using(alias).values_list("id", "codename", "content_type_id", "name")
            ]
    return out


def _rows(model: type[models.Model], alias: str, batch: int, as_text: frozenset[str] = frozenset()
          ) -> Iterator[list[tuple]]:
    """Every row of ``model`` in pk order, in batches; the columns named in ``as_text`` as the database stores
    them (no converter: see :func:`sqlite_datetime_encoders`)."""
    cols = columns(model)
    attnames = [f.attname for f in cols]
    pk = model._meta.pk.attname
    qs = model._base_manager.using(alias).order_by(pk)
    if as_text:
        # an expression (``col || ''``), not the bare column: sqlite3 converts a column declared "datetime" itself
        qs = qs.annotate(**{f"_dbs_text_{a}": Func(F(a), template="%(expressions)s || ''", output_field=TextField())
                            for a in as_text})
        attnames = [f"_dbs_text_{a}" if a in as_text else a for a in attnames]
    last = None
    while True:
        page = qs if last is None else qs.filter(**{f"{pk}__gt": last})
        rows = list(page.values_list(*attnames)[:batch])
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        last = rows[-1][0]


# How Django's SQLite backend stores an aware datetime: ``str()`` of it in UTC, naive ("2026-01-02 03:04:05" or
# with ".ffffff"); isoformat() of the aware value is the same text with a "T" and "+00:00".
_SQLITE_UTC_TEXT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{6})?")


def sqlite_datetime_encoders(model: type[models.Model], alias: str) -> dict[str, Callable[[Any], Any]]:
    """Encoders of ``model``'s DateTimeField columns that read SQLite's stored text directly, by attname.

    Why: through the ORM every datetime is parsed into an aware datetime (Django's converter) only for the
    backup to turn it back into text (isoformat): 2 of every 5 values of a blog post, the most expensive step
    of the row loop. On SQLite with USE_TZ and the database in UTC (Django's defaults) the stored text IS the
    isoformat without its "T" and "+00:00"; a value in any other shape (written by hand, by another tool) takes
    the converter's path, so the payload is the same byte for byte either way. Empty elsewhere.
    """
    connection = connections[alias]
    if connection.vendor != "sqlite" or not settings.USE_TZ or connection.timezone_name != "UTC":
        return {}
    out = {}
    for field in columns(model):
        if type(field) is not models.DateTimeField:  # built-in only: a subclass may store something else
            continue
        convert = connection.ops.convert_datetimefield_value

        def encode(v, field=field, convert=convert):
            if v is None:
                return None
            if isinstance(v, str) and _SQLITE_UTC_TEXT.fullmatch(v):
                return f"{v[:10]}T{v[11:]}+00:00"
            value = convert(v, None, connection)
            return None if value is None else value.isoformat()

        out[field.attname] = encode
    return out


def stream(
    alias: str, *, head: dict[str, Any], reporter: Reporter, total_rows: int | None = None,
    models_: list[type[models.Model]] | None = None, manifest: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """The whole payload of a logical backup of ``alias`` (run it inside :func:`snapshot`).

    ``models_`` replaces the carried model set (used to set the console's own
    records aside across a ``--reset``). ``manifest`` is completed with the
    files (``file_sha256``, ``missing_files``) once the last one has streamed.
    """
    batch = int(dbs_settings.BATCH_SIZE)
    roots = file_roots()
    yield payload.MAGIC
    yield payload.json_frame(payload.HEAD, head)
    yield payload.json_frame(payload.REFS, references(alias))
    counts: dict[str, int] = {}
    wanted: dict[tuple[str, str], str] = {}
    done = 0
    media = _all_media_entries() if models_ is None else []
    if models_ is None:  # a whole backup: the bar's database and files parts by their bytes (backups.sizing)
        sizing.announce(reporter, sizing.database_bytes(alias), sizing.file_bytes(sizing.media_sizes(media)))
    for model in backed_up_models() if models_ is None else models_:
        cols = columns(model)
        stored = sqlite_datetime_encoders(model, alias)
        encoders = [(i, enc) for i, enc in ((i, stored.get(f.attname) or encoder(f)) for i, f in enumerate(cols))
                    if enc is not None]
        fcols = [(cols.index(fc.field), fc) for fc in file_columns(model)]
        # Files of a field whose storage is not a local folder (S3...) are read through that storage.
        sroots = {fc.attname: storage_media.root_for_field(model, fc.field) if fc.kind is FieldKind.FILE else None
                  for _, fc in fcols}
        label = model._meta.label
        yield payload.json_frame(payload.MODEL, {
            "model": label, "table": model._meta.db_table, "columns": [f.attname for f in cols],
            "pk": model._meta.pk.attname,
        })
        counts[label] = 0
        for rows in _rows(model, alias, batch, frozenset(stored)):
            reporter.check()
            if encoders:
                # Column by column (transposed with zip, in C): only the columns with an encoder are touched,
                # no row is copied into a list of its own. MessagePack packs a tuple as the array a list makes.
                by_column = list(zip(*rows))
                for i, enc in encoders:
                    by_column[i] = list(map(enc, by_column[i]))
                out = list(zip(*by_column))
            else:
                out = rows
            for i, fc in fcols:
                for row in rows:
                    value = row[i]
                    if value:
                        where = _in_storage(sroots[fc.attname], str(value)) if sroots[fc.attname] else \
                            locate(fc, str(value), roots)
                        if where is None:
                            log.warning("skipping unsafe or unknown file path %r in %s", value, label)
                        else:
                            wanted.setdefault(where, str(value))
            yield payload.rows_frame(out)
            counts[label] += len(rows)
            done += len(rows)
            reporter.report("rows", done, total_rows)
    for root_id, name, _ in media:
        wanted.setdefault((root_id, name), name)
    files, missing = [], []
    listed = sorted(wanted.items())
    # Each local file's path resolved once (resolving is most of this loop's cost): for its size and the cache.
    paths = [None if storage_media.is_storage_root(root_id) else safe_path(roots[root_id], name)
             for (root_id, name), _ in listed]
    sizes = [-1 if path is None else _size(path) for path in paths]
    total_bytes, done_bytes = sizing.file_bytes(sizes), 0
    for ((root_id, name), ref), path in zip(listed, paths):  # the files stage moves by bytes: one video is most
        reporter.check()
        reporter.report("files", done_bytes, total_bytes)
        hit = files_cache.reusable(root_id, name, path)
        if hit is not None:  # a repository backup, and the file is unchanged since the last snapshot read it
            yield from files_cache.reused_frames({"root": root_id, "name": name, "ref": ref, "size": hit.size}, hit)
            files.append([root_id, name, hit.size, hit.sha256])
            done_bytes += hit.size
            continue
        f, size = _open(root_id, name, roots)
        if f is None:
            missing.append([root_id, name])
            continue
        with f:
            header = {"root": root_id, "name": name, "ref": ref, "size": size}
            size, sha = yield from payload.file_frames(f, header)
            files.append([root_id, name, size, sha])
            done_bytes += size
    if missing:
        log.warning("%d file(s) named in the database were missing on disk and are not in the backup", len(missing))
    reporter.report("files", max(done_bytes, total_bytes), max(done_bytes, total_bytes), force=True)
    if manifest is not None:
        manifest.update(file_sha256=files, missing_files=missing, files=len(files))
    yield payload.json_frame(payload.TRAILER, {"counts": counts, "files": files, "missing_files": missing})
    yield payload.frame(payload.END)


def all_media() -> list[tuple[str, str]]:
    """``(root id, name)`` of :func:`_all_media_entries`."""
    return [(root_id, name) for root_id, name, _ in _all_media_entries()]


def _all_media_entries() -> list[tuple[str, str, Path | None]]:
    """Every file of the media storage when ``MEDIA_FILES`` is "all" (the default), held by a field or not.

    Why: a site's media is more than its file fields. An image uploaded through a rich-text editor is named
    only in a post's HTML; a backup of the fields alone restored the post without it.
    """
    choice = dbs_settings.MEDIA_FILES
    if choice not in ("all", "fields"):
        raise BackupError(f"DBS_ADMIN['MEDIA_FILES'] is {choice!r}; use \"all\" or \"fields\"")
    return media_files() if choice == "all" else []


def _in_storage(root_id: str, value: str) -> tuple[str, str] | None:
    try:
        return root_id, clean_name(value)
    except UnsafePathError:
        return None


def _open(root_id: str, name: str, roots: dict[str, Path]) -> tuple[Any, int]:
    """``(stream, size or -1)`` of a file to back up, from its folder or its storage; ``(None, -1)`` if missing."""
    if storage_media.is_storage_root(root_id):
        return storage_media.open_file(root_id, name), -1
    path = safe_path(roots[root_id], name)
    try:
        return open(path, "rb"), _size(path)
    except OSError:
        return None, -1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
