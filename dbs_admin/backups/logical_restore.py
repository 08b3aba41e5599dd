"""Logical restore: load a payload into any database alias, all or nothing.

Why this shape: rows go in with ``executemany`` (``COPY`` on PostgreSQL; a
multi-row INSERT on MariaDB) in batches inside ONE transaction whose
foreign-key checks are deferred to its end (MariaDB cannot defer them: they
are off during the load and every key is checked by query before the
commit), so load order can never drop a row and a failure anywhere (a bad
file hash, a truncated stream, a dangling key) rolls everything back. Files are
staged and hash-checked before anything is committed (see staging.py).
Nothing is committed before the sealed stream has reached its authenticated
end.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, BinaryIO

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.db import IntegrityError, connections, models

from dbs_admin.backups import mysql_session, payload, sizing, storage_media
from dbs_admin.backups.dry_run import FileDiff, RowComparer
from dbs_admin.backups.errors import IntegrityCheckError, PayloadError, RestoreError
from dbs_admin.backups.failures import database_errors, first_line
from dbs_admin.backups.files import MEDIA, RestoreNames, clean_name, file_roots, root_for_restore
from dbs_admin.backups.manifest import check_against_trailer
from dbs_admin.backups.pipeline import frames_in_background
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.selection import (
    all_storable_models,
    decoder,
    file_columns,
    is_excluded,
    value_kind,
    value_rule,
)
from dbs_admin.backups.sqlite_indexes import IndexesAside
from dbs_admin.backups.write_transaction import write_transaction
from dbs_admin.suspend import history_suspended

log = logging.getLogger("dbs_admin.backups")


@dataclass
class Selection:
    """What the caller asked to restore: everything, some models, or some objects."""

    models: set[str] | None = None  # lower-case labels
    objects: dict[str, set[str]] | None = None  # lower-case label -> primary keys as strings

    @classmethod
    def parse(cls, models_: list[str] | None, objects: list[str] | None) -> Selection:
        sel = cls()
        if models_:
            sel.models = set()
            for label in models_:
                sel.models.add(_model(label)._meta.label_lower)
        if objects:
            sel.objects = {}
            for entry in objects:
                label, sep, pk = entry.partition(":")
                if not sep or not pk:
                    raise RestoreError(f"--object takes app_label.Model:pk, got {entry!r}")
                sel.objects.setdefault(_model(label)._meta.label_lower, set()).add(pk)
        return sel

    @property
    def partial(self) -> bool:
        return self.models is not None or self.objects is not None


def _model(label: str) -> type[models.Model]:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        raise RestoreError(f"no model {label!r}; use app_label.ModelName, e.g. blog.Post") from None


def _owner(model: type[models.Model]) -> tuple[type[models.Model], str] | None:
    """For an auto-created M2M table: the declaring model and the column pointing at it."""
    owner = model._meta.auto_created
    if not isinstance(owner, type):
        return None
    for f in owner._meta.local_many_to_many:
        if f.remote_field.through is model:
            return owner, f.m2m_column_name()
    return None


@dataclass
class _Table:
    model: type[models.Model] | None
    label: str
    keep: list[int] = field(default_factory=list)  # payload column indexes written
    convert: list[Any] = field(default_factory=list)  # per kept column: callable or None
    extra_values: list[Any] = field(default_factory=list)  # defaults of fields absent from the payload
    column_names: list[str] = field(default_factory=list)
    filter_col: int | None = None
    filter_values: set[str] | None = None
    file_cols: list[int] = field(default_factory=list)
    selected: bool = False
    width: int = 0  # columns per row in the payload
    rules: list[Any] = field(default_factory=list)  # per kept column: a ValueRule (passed through) or None
    names: list[str] = field(default_factory=list)  # per kept column: the field's name, for messages
    pk_index: int = 0  # payload column of the primary key, for messages


class LogicalRestore:
    def __init__(self, alias: str, selection: Selection, *, dry_run: bool, allow_mismatch: bool,
                 manifest: dict[str, Any] | None, reporter: Reporter, unlink_missing: bool = False):
        self.alias = alias
        self.connection = connections[alias]
        self.sel = selection
        self.dry_run = dry_run
        self.allow_mismatch = allow_mismatch
        self.manifest = manifest  # checked against what the stream holds; None: a stream of our own, no manifest
        self.manifest_counts: dict[str, int] | None = (manifest or {}).get("counts")
        self.reporter = reporter
        self.roots = file_roots()
        self.staging = storage_media.MixedStaging()
        self.names = RestoreNames()  # every file name checked against the others and the live folders
        self.rows_written: dict[str, int] = {}
        self.rows_seen: dict[str, int] = {}
        self.changes: list[str] = []
        self.files_seen: dict[tuple[str, str], tuple[int, str]] = {}
        self.files_written = 0
        self.wanted_refs: set[str] = set()
        # The files stage moves by bytes: the manifest lists every file's size (a whole restore writes them all).
        self.file_bytes_total = None if selection.partial else sizing.listed_file_bytes(manifest) or None
        self.file_bytes_staged = 0
        self.ct_map: dict[int, int] = {}
        self.perm_map: dict[int, int] = {}
        self.restored_models: list[type[models.Model]] = []
        self.found_objects: dict[str, set[str]] = {}
        self.live_rows: dict[str, int] = {}
        self.indexes = IndexesAside(self.connection)
        self.comparers: dict[str, RowComparer] = {}  # dry run: the backup's rows against the live ones
        self.file_diff = FileDiff()
        self.unlink_missing = unlink_missing  # null (or drop) restored rows' links to rows that do not exist

    # --- entry point -------------------------------------------------------------------------------

    def run(self, stream: BinaryIO) -> None:
        try:
            with history_suspended(), cyclic_collector_paused(), mysql_session.exact_session(self.connection):
                if self.dry_run:
                    self._consume(stream)
                    return
                mysql_session.refuse_non_transactional(
                    self.connection, [m._meta.db_table for m in all_storable_models() if not is_excluded(m)])
                with (mysql_session.foreign_key_checks_off(self.connection), write_transaction(self.alias),
                      _bigger_sqlite_cache(self.connection)):
                    if self.connection.vendor == "postgresql":
                        with self.connection.cursor() as c:
                            c.execute("SET CONSTRAINTS ALL DEFERRED")
                    try:
                        self._consume(stream)
                        self._after_load()
                    except BaseException:
                        self.indexes.abandon()  # the rollback must have the connection to itself
                        raise
                    self.reporter.report("files", self.file_bytes_staged, self.file_bytes_total, force=True)
                    self.staging.apply()
                self.staging.committed()  # the atomic block committed: the moved files are final
        except database_errors(self.connection) as exc:
            self.staging.rollback()
            if why := mysql_session.explain(exc):
                raise RestoreError(f"database {self.alias!r}: {why}; nothing was restored") from exc
            raise RestoreError(
                f"database {self.alias!r} refused the restored rows: {first_line(exc)}; the transaction was rolled "
                "back and nothing was restored. If its schema is broken, restore with --reset."
            ) from exc
        except payload.MALFORMED as exc:  # contents that passed the record checks yet do not fit together
            self.staging.rollback()
            raise payload.malformed(exc) from exc
        except BaseException:
            self.staging.rollback()
            raise
        finally:
            self.staging.cleanup()
            if not self.dry_run:
                from django.contrib.contenttypes.models import ContentType

                ContentType.objects.clear_cache()

    # --- stream ------------------------------------------------------------------------------------

    def _consume(self, stream: BinaryIO) -> None:
        frames = frames_in_background(stream)
        kind, body = next(frames)
        if kind != payload.HEAD:
            raise PayloadError("the backup's contents do not start with their header record")
        head = payload.load_record(payload.HEAD, body)
        if head.get("kind") != "logical":
            raise RestoreError("this is not a logical backup")
        table: _Table | None = None
        staged = None
        current_file: dict | None = None
        trailer = None
        with self.connection.cursor() as cursor:
            rows_done = False
            for kind, body in frames:
                if kind in (payload.FILE, payload.TRAILER) and not rows_done:
                    rows_done = True  # tables come before files: the connection is not needed until the end
                    self.indexes.rebuild_in_background()
                elif kind in (payload.REFS, payload.MODEL, payload.ROWS) and rows_done:
                    raise PayloadError("table records after the files; the backup's contents are out of order")
                if kind == payload.REFS:
                    self._refs(payload.load_record(kind, body))
                elif kind == payload.MODEL:
                    table = self._start_table(payload.load_record(kind, body), cursor)
                elif kind == payload.ROWS:
                    if table is None:
                        raise PayloadError("rows before their table record")
                    self._rows(table, payload.load_rows(body), cursor)
                elif kind == payload.FILE:
                    current_file = payload.load_record(kind, body)
                    staged = self._start_file(current_file)
                elif kind == payload.DATA:
                    if current_file is None:
                        raise PayloadError("file data outside a file record")
                    if staged is not None:
                        staged.write(body)
                    else:
                        current_file.setdefault("_hash", hashlib.sha256()).update(body)
                        current_file["_size"] = current_file.get("_size", 0) + len(body)
                elif kind == payload.END_DATA:
                    if current_file is None:
                        raise PayloadError("end of file data outside a file record")
                    self._end_file(current_file, staged, payload.load_record(kind, body))
                    current_file = staged = None
                elif kind == payload.TRAILER:
                    trailer = payload.load_record(kind, body)
                elif kind == payload.END:
                    pass
                else:
                    raise PayloadError(f"unexpected record {kind!r} in a logical backup")
        if trailer is None:
            raise PayloadError("the backup's contents have no trailer; the file is incomplete")
        self._check_trailer(trailer)

    # --- references --------------------------------------------------------------------------------

    def _refs(self, refs: dict) -> None:
        from django.contrib.auth.models import Permission
        from django.contrib.contenttypes.models import ContentType

        cts = ContentType.objects.using(self.alias)
        have = {(a, m): i for i, a, m in cts.values_list("id", "app_label", "model")}
        for src_id, app_label, model in refs.get("contenttypes", []):
            key = (app_label, model)
            if key not in have and not self.dry_run:
                have[key] = cts.create(app_label=app_label, model=model).pk
            if key in have:
                self.ct_map[src_id] = have[key]
        perms = Permission.objects.using(self.alias)
        have_p = {(c, ct): i for i, c, ct in perms.values_list("id", "codename", "content_type_id")}
        for src_id, codename, src_ct, name in refs.get("permissions", []):
            ct = self.ct_map.get(src_ct)
            if ct is None:
                continue
            key = (codename, ct)
            if key not in have_p and not self.dry_run:
                have_p[key] = perms.create(codename=codename, content_type_id=ct, name=name[:255]).pk
            if key in have_p:
                self.perm_map[src_id] = have_p[key]

    # --- tables ------------------------------------------------------------------------------------

    def _selected(self, model: type[models.Model]) -> tuple[bool, int | None, set[str] | None]:
        """Whether a table is restored, and the (column, values) filter of a per-object restore."""
        label = model._meta.label_lower
        owner = _owner(model)
        if self.sel.objects is not None:
            if label in self.sel.objects:
                return True, None, self.sel.objects[label]
            if owner is not None and owner[0]._meta.label_lower in self.sel.objects:
                return True, -1, self.sel.objects[owner[0]._meta.label_lower]
            return False, None, None
        if self.sel.models is not None:
            chosen = label in self.sel.models or (owner is not None and owner[0]._meta.label_lower in self.sel.models)
            return chosen, None, None
        return not is_excluded(model), None, None

    def _start_table(self, spec: dict, cursor) -> _Table:
        label = spec["model"]
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            if not self.allow_mismatch:
                raise RestoreError(f"the backup holds model {label}, which this code does not have") from None
            self.changes.append(f"{label}: skipped (no such model in this code)")
            return _Table(None, label)
        t = _Table(model, model._meta.label)
        self.rows_seen.setdefault(label, 0)
        selected, filter_kind, values = self._selected(model)
        t.selected = selected
        if not selected:
            return t
        columns = spec["columns"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise PayloadError(f"the table record of {label} does not list its columns; the backup is corrupt")
        t.width = len(columns)
        t.pk_index = columns.index(spec["pk"]) if spec.get("pk") in columns else 0
        by_attname = {f.attname: f for f in model._meta.concrete_fields}
        from django.contrib.auth.models import Permission
        from django.contrib.contenttypes.models import ContentType

        relinked: dict[int, Any] = {}  # position among the kept columns -> its content type/permission id map
        for i, name in enumerate(columns):
            f = by_attname.get(name)
            if f is None:
                if not self.allow_mismatch:
                    raise RestoreError(f"{label}.{name} is in the backup but not in this code's model")
                continue
            t.keep.append(i)
            t.column_names.append(f.column)
            t.names.append(f.name)
            conv = decoder(f, self.connection)
            t.rules.append(value_rule(f, self.connection) if conv is None else None)
            if f.is_relation and f.related_model is ContentType:
                conv = self._mapper(self.ct_map, conv)
                relinked[len(t.keep) - 1] = self._mapper(self.ct_map, None)
            elif f.is_relation and f.related_model is Permission:
                conv = self._mapper(self.perm_map, conv)
                relinked[len(t.keep) - 1] = self._mapper(self.perm_map, None)
            t.convert.append(conv)
        kept_names = [columns[i] for i in t.keep]
        if self.dry_run and model._meta.pk.attname in kept_names:
            self.comparers[model._meta.label] = RowComparer(model, self.alias, kept_names, relinked)
        for f in model._meta.concrete_fields:
            if f.attname not in columns:
                t.column_names.append(f.column)
                t.extra_values.append(f.get_db_prep_save(f.get_default(), self.connection))
        file_attnames = {fc.attname for fc in file_columns(model)}
        t.file_cols = [i for i, name in enumerate(columns) if name in file_attnames]
        if values is not None:
            if filter_kind == -1:
                owner_col = _owner(model)[1]
                owner_attname = next(f.attname for f in model._meta.concrete_fields if f.column == owner_col)
                t.filter_col = columns.index(owner_attname)
            else:
                t.filter_col = columns.index(spec["pk"])
            t.filter_values = values
        qs = model._base_manager.using(self.alias)
        if t.filter_values is not None:
            pk_field = model._meta.pk
            if filter_kind == -1:
                target = qs.filter(**{f"{owner_attname}__in": list(values)})
            else:
                target = qs.filter(pk__in=[pk_field.to_python(v) for v in values])
        else:
            target = qs.all()
        live = target.count()
        self.restored_models.append(model)
        self.rows_written.setdefault(model._meta.label, 0)
        self.live_rows[model._meta.label] = live
        if not self.dry_run:
            if not self.sel.partial:  # before the delete: see sqlite_indexes (pending foreign-key checks)
                self.indexes.set_aside(model._meta.db_table, cursor)
            target._raw_delete(self.alias)
        return t

    @staticmethod
    def _mapper(mapping: dict[int, int], inner):
        def convert(v):
            if v is None:
                return None
            v = mapping.get(v, v)
            return inner(v) if inner else v

        return convert

    def _rows(self, t: _Table, rows: list[list[Any]], cursor) -> None:
        self.reporter.check()
        if not rows:  # the writer never makes one: a stream of them is a way to spin a reader for ever
            raise PayloadError("the backup holds empty batches of rows; the file is corrupt or hostile")
        seen_label = t.label if t.model is None else t.model._meta.label
        seen = self.rows_seen[seen_label] = self.rows_seen.get(seen_label, 0) + len(rows)
        if self.manifest_counts is not None and seen > self.manifest_counts.get(seen_label, 0):
            raise PayloadError(f"the backup holds more rows of {seen_label} than its manifest counts "
                               f"({self.manifest_counts.get(seen_label, 0)}); the file is corrupt or hostile")
        if not t.selected:
            return
        if t.filter_values is not None:
            rows = [r for r in rows if str(r[t.filter_col]) in t.filter_values]
            if t.model._meta.label_lower in (self.sel.objects or {}):
                found = self.found_objects.setdefault(t.model._meta.label_lower, set())
                found.update(str(r[t.filter_col]) for r in rows)
        if not rows:
            return
        for i in t.file_cols:
            self.wanted_refs.update(str(r[i]) for r in rows if r[i])
        label = t.model._meta.label
        self.rows_written[label] += len(rows)
        total = None if self.sel.partial or not self.manifest_counts else sum(self.manifest_counts.values())
        self.reporter.report("rows", sum(self.rows_written.values()), total)
        if any(len(r) != t.width for r in rows):
            raise PayloadError(f"rows of {label} do not have the {t.width} columns their table record names")
        # Column by column (transposed with zip, in C): most columns need no conversion, only a type check.
        by_column = list(zip(*rows))
        columns = [self._column(t, rows, by_column[i], conv, rule, name)
                   for i, conv, rule, name in zip(t.keep, t.convert, t.rules, t.names, strict=True)]
        if self.dry_run:
            if label in self.comparers:
                self.comparers[label].compare([[r[i] for i in t.keep] for r in rows])
            return
        columns += [repeat(value, len(rows)) for value in t.extra_values]
        _insert(self.connection, cursor, t.model._meta.db_table, t.column_names, list(zip(*columns)))

    @staticmethod
    def _column(t: _Table, rows: list, values: tuple, conv, rule, name: str):
        """One column of a batch, converted for the driver; a value it must not hold is refused by name."""
        if conv is None:
            bad = rule.first_bad(values) if rule is not None else None
            if bad is None:
                return values
            what = rule.what
        else:
            try:
                return list(map(conv, values))
            except (TypeError, ValueError, ArithmeticError, ValidationError, RecursionError, AttributeError):
                bad = next(n for n, v in enumerate(values) if _fails(conv, v))
                what = value_kind(t.model._meta.get_field(name))
        value = values[bad]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise PayloadError(f"{t.model._meta.label} pk {str(rows[bad][t.pk_index])[:60]}: field {name!r} holds {shown}, "
                           f"which is not a valid {what}; the backup is corrupt or crafted, nothing was restored")

    # --- files -------------------------------------------------------------------------------------

    def _start_file(self, spec: dict):
        if storage_media.is_storage_root(spec.get("root")):
            return self._start_storage_file(spec)
        root = root_for_restore(spec.get("root", ""), self.roots)
        final = self.names.claim(root, spec.get("name", ""))
        wanted = not self.sel.partial or spec.get("ref") in self.wanted_refs
        if not wanted or self.dry_run:
            if wanted:
                spec["_wanted"] = final
            return None
        self.reporter.report("files", self.file_bytes_staged, self.file_bytes_total)
        size = spec.get("size")
        self.file_bytes_staged += size if isinstance(size, int) and size > 0 else 0
        return self.staging.new_file(root, final)

    def _start_storage_file(self, spec: dict):
        """A file bound for a storage (S3...): staged privately, written through the storage at the end."""
        root_id, name = spec["root"], clean_name(spec.get("name", ""))
        storage_media.storage_for(root_id)  # a storage this site does not have refuses the restore now
        wanted = not self.sel.partial or spec.get("ref") in self.wanted_refs
        if not wanted or self.dry_run:
            if wanted:
                spec["_wanted_in"] = (root_id, name)
            return None
        return self.staging.new_storage_file(root_id, name)

    def _end_file(self, spec: dict, staged, end: dict) -> None:
        key = (spec.get("root", MEDIA), spec.get("name", ""))
        size, sha = int(end.get("size", -1)), str(end.get("sha256", ""))
        if staged is not None:
            staged.finish(size, sha, key[1])
            self.files_written += 1
        else:
            digest = spec.get("_hash") or hashlib.sha256()
            if spec.get("_size", 0) != size or digest.hexdigest() != sha:
                raise IntegrityCheckError(
                    f"the file {key[1]!r} in the backup does not match its recorded hash; the backup is damaged"
                )
            if spec.get("_wanted"):
                self.files_written += 1
                self.file_diff.add(spec["_wanted"], size, sha)
            elif spec.get("_wanted_in"):
                self.files_written += 1
                self.file_diff[storage_media.diff_state(*spec["_wanted_in"], size, sha)] += 1
        self.files_seen[key] = (size, sha)

    # --- end ---------------------------------------------------------------------------------------

    def _check_trailer(self, trailer: dict) -> None:
        counts = trailer.get("counts", {})
        if counts != self.rows_seen:
            raise IntegrityCheckError(
                f"the backup's rows do not match its recorded counts ({_diff(counts, self.rows_seen)}); "
                "it is damaged or was not written by dbs_admin"
            )
        if self.manifest_counts is not None and self.manifest_counts != counts:
            raise IntegrityCheckError(
                f"the backup's rows differ from the counts in its manifest ({_diff(self.manifest_counts, counts)})"
            )
        recorded = payload.file_index(trailer.get("files", []))
        if recorded != self.files_seen:
            raise IntegrityCheckError("the backup's files do not match the list and hashes it recorded")
        check_against_trailer(self.manifest, trailer)
        if self.sel.models:
            seen = {label.lower() for label in self.rows_seen}
            absent = sorted(self.sel.models - seen)
            if absent:
                raise RestoreError(f"the backup holds no {', '.join(absent)} (excluded from backups?); "
                                   "nothing was restored")
        if self.sel.objects:
            for label, pks in self.sel.objects.items():
                missing = pks - self.found_objects.get(label, set())
                if missing:
                    raise RestoreError(f"{label} {sorted(missing)} not found in the backup; nothing was restored")

    def _after_load(self) -> None:
        # PostgreSQL builds no index on a table with pending (deferred) foreign-key checks: there the indexes
        # come back after check_constraints() has run those checks.
        checks_pending = self.connection.vendor == "postgresql"
        if not checks_pending:
            self.indexes.finish()
        with self.connection.cursor() as cursor:
            self._fix_kept_references(cursor)
            if self.unlink_missing:
                for model in self.restored_models:
                    self.changes += unlink_dangling(self.connection, cursor, model)
            # PostgreSQL's sequences ignore explicit ids: set them past the restored ones. InnoDB needs nothing
            # (and an ALTER TABLE ... AUTO_INCREMENT would commit the load half-way): every explicit id it is
            # given raises the table's counter past it, and the counter never goes down, so the next insert
            # gets an id no restored row has. SQLite's rowid is max(id) + 1 by itself.
            if self.connection.vendor == "postgresql" and self.restored_models:
                for sql in self.connection.ops.sequence_reset_sql(no_style(), self.restored_models):
                    cursor.execute(sql)
        try:
            self.connection.check_constraints()
        except IntegrityError as exc:
            raise RestoreError(
                f"the restored rows would break a foreign key ({exc}); nothing was restored. Restore the "
                "related models too, or the whole backup."
            ) from None
        if checks_pending:
            self.indexes.finish()

    def _fix_kept_references(self, cursor) -> None:
        """Rows the restore keeps (the console's records) must not point at rows that are gone."""
        restored = set(self.restored_models)
        if not restored:
            return
        qn = self.connection.ops.quote_name
        for model in all_storable_models():
            if model in restored or not is_excluded(model):
                continue
            for f in model._meta.concrete_fields:
                if not (f.is_relation and f.related_model in restored):
                    continue
                other = f.related_model
                target_col = f.target_field.column
                where = (f"{qn(f.column)} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {qn(other._meta.db_table)} o "
                         f"WHERE o.{qn(target_col)} = {qn(model._meta.db_table)}.{qn(f.column)})")
                if f.null:
                    cursor.execute(f"UPDATE {qn(model._meta.db_table)} SET {qn(f.column)} = NULL WHERE {where}")
                else:
                    cursor.execute(f"DELETE FROM {qn(model._meta.db_table)} WHERE {where}")
                if cursor.rowcount:
                    self.changes.append(f"{model._meta.label}.{f.name}: {cursor.rowcount} kept row(s) unlinked")


SQLITE_RESTORE_CACHE_KIB = 32768


@contextmanager
def cyclic_collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while rows load; on again afterwards if it was on.

    Why: a load allocates millions of short-lived lists and tuples (the rows)
    that reference counting frees as each batch ends; they make no cycles,
    but their churn sets off full collections that walk the whole heap again
    and again: a tenth of a restore's time. Nothing is leaked: what the
    paused collector would have found, it finds when it is back on.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@contextmanager
def _bigger_sqlite_cache(connection) -> Iterator[None]:
    """32 MiB of SQLite page cache while loading: index pages of large tables stay in memory
    instead of being re-read for every batch (the default is 2 MiB). Put back afterwards."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as c:
        c.execute("PRAGMA cache_size")
        before = c.fetchone()[0]
        c.execute(f"PRAGMA cache_size = -{SQLITE_RESTORE_CACHE_KIB}")
    try:
        yield
    finally:
        with connection.cursor() as c:
            c.execute(f"PRAGMA cache_size = {int(before)}")


def unlink_dangling(connection, cursor, model: type[models.Model]) -> list[str]:
    """Null ``model``'s foreign keys that point at missing rows (delete the row when the key is required)."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    notes = []
    for f in model._meta.concrete_fields:
        if not f.is_relation or f.related_model is None:
            continue
        other = qn(f.related_model._meta.db_table)
        where = (f"{qn(f.column)} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {other} o "
                 f"WHERE o.{qn(f.target_field.column)} = {table}.{qn(f.column)})")
        if f.null:
            cursor.execute(f"UPDATE {table} SET {qn(f.column)} = NULL WHERE {where}")
        else:
            cursor.execute(f"DELETE FROM {table} WHERE {where}")
        if cursor.rowcount and cursor.rowcount > 0:
            notes.append(f"{model._meta.label}.{f.name}: {cursor.rowcount} kept row(s) unlinked")
    return notes


def _diff(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    parts = [f"{k}: {a.get(k)} vs {b.get(k)}" for k in keys if a.get(k) != b.get(k)]
    return "; ".join(parts[:5])


def _fails(conv, value) -> bool:
    try:
        conv(value)
    except Exception:  # noqa: BLE001 - any failure marks the value the batch could not convert
        return True
    return False


def _insert(connection, cursor, table: str, columns: list[str], rows: list[list[Any]]) -> None:
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    if connection.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {qn(table)} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    placeholders = ", ".join(["%s"] * len(columns))
    cursor.executemany(f"INSERT INTO {qn(table)} ({cols}) VALUES ({placeholders})", rows)


def summary_lines(r: LogicalRestore) -> Iterator[str]:
    """The plan (dry run) or summary: rows replaced per model, files written, kept rows unlinked.

    A dry run also says what differs: rows added, changed, removed and unchanged, files new or different."""
    verb = "would replace" if r.dry_run else "replaced"
    for label in sorted(r.rows_written):
        live = r.live_rows.get(label, 0)
        line = f"{label}: {verb} {live} row(s) with {r.rows_written[label]} from the backup"
        if label in r.comparers:
            line += f" ({r.comparers[label].diff.describe(live)})"
        yield line
    files = f"files: {'would write' if r.dry_run else 'wrote'} {r.files_written}"
    yield files + (f" ({r.file_diff.describe()})" if r.dry_run else "")
    yield from r.changes
