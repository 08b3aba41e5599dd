"""``restore_backup``: check the manifest, then load the whole backup or a part, all or nothing.

Why the checks come first: a migration mismatch, a wrong key or a backup of
the other kind must be refused before anything is touched; with ``reset``
the whole file is read and checked before the schema is dropped, so a
damaged backup can never leave an empty database behind. ``before_writing``
runs after those checks and before the first write (the safety backup of
what is about to be replaced), so a refused restore costs no backup.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import DatabaseError, connections

from dbs_admin import signals
from dbs_admin.backups import manifest as manifest_mod
from dbs_admin.backups import native, native_sqlite
from dbs_admin.backups.errors import CancelledError, RestoreError
from dbs_admin.backups.failures import database_errors, first_line, is_out_of_space, out_of_space
from dbs_admin.backups.logical_restore import LogicalRestore, Selection, summary_lines
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.sources import private_dir, readable_copy, sweep_leftovers
from dbs_admin.backups.types import RestoreResult
from dbs_admin.conf import dbs_settings
from dbs_admin.models import Backup
from dbs_admin.sealed import open_sealed
from dbs_admin.targets import get_target
from dbs_admin.targets.base import is_repository

log = logging.getLogger("dbs_admin.backups")


def reset_schema(alias: str) -> None:
    """Drop every table of ``alias`` and migrate it afresh (``--reset``).

    MariaDB's DDL is not transactional, so this commits as it goes on every engine
    but PostgreSQL: that is why the whole backup is read and checked before it runs."""
    connection = connections[alias]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP SCHEMA public CASCADE")
            cursor.execute("CREATE SCHEMA public")
        elif connection.vendor == "mysql":
            cursor.execute("SET SESSION foreign_key_checks = 0")
            try:
                for info in connection.introspection.get_table_list(cursor):
                    cursor.execute(f"DROP {'VIEW' if info.type == 'v' else 'TABLE'} IF EXISTS {qn(info.name)}")
            finally:
                cursor.execute("SET SESSION foreign_key_checks = 1")
        else:
            tables = connection.introspection.table_names(cursor)
            cursor.execute("PRAGMA foreign_keys = OFF")
            for t in tables:
                cursor.execute(f"DROP TABLE IF EXISTS {qn(t)}")
            cursor.execute("PRAGMA foreign_keys = ON")
    call_command("migrate", database=alias, interactive=False, verbosity=0)


def restore_backup(
    source: str | Path, *, target: str | None = None, passphrase: str | None = None, identity: Any = None,
    database: str = "default", models: list[str] | None = None, objects: list[str] | None = None,
    dry_run: bool = False, reset: bool = False, allow_migration_mismatch: bool = False, progress=None, cancel=None,
    before_writing: Callable[[], Any] | None = None,
) -> RestoreResult:
    """Restore a sealed backup into ``database``: all or nothing.

    ``source`` is a path, or a backup name on ``target``. ``models`` restricts
    to "app_label.Model" labels; ``objects`` to "app_label.Model:pk" entries.
    Refuses a migration mismatch (MigrationMismatchError) unless allowed.
    ``before_writing`` is called once every check that needs no writing has
    passed (key, kind, migrations; with ``reset`` the whole contents), just
    before the first write; if it raises, nothing is written. Sends
    ``restore_started``, then ``restore_finished`` or ``restore_failed``
    (``dbs_admin.signals``), unless ``dry_run``.
    """
    arguments = {"target": target, "passphrase": passphrase, "identity": identity, "database": database,
                 "models": models, "objects": objects, "dry_run": dry_run, "reset": reset,
                 "allow_migration_mismatch": allow_migration_mismatch, "progress": progress, "cancel": cancel,
                 "before_writing": before_writing}
    if dry_run:
        return _restore_with_errors_explained(source, **arguments)
    try:
        backup = Backup.objects.filter(name=Path(str(source)).name).first()
    except DatabaseError:  # a bare disaster-recovery database: no records to name
        backup = None
    with signals.announced(signals.restore_started, signals.restore_finished, signals.restore_failed, Backup,
                           cancelled=(CancelledError,), source=str(source), database=database,
                           backup=backup) as outcome:
        outcome["result"] = result = _restore_with_errors_explained(source, **arguments)
    return result


def _restore_with_errors_explained(source, *, target, passphrase, identity, database, models, objects, dry_run,
                                   reset, allow_migration_mismatch, progress, cancel,
                                   before_writing) -> RestoreResult:
    connection = connections[database]
    stage = {"reset": False}  # set once --reset has rebuilt the schema: the database is no longer as before
    try:
        return _restore_backup(source, target=target, passphrase=passphrase, identity=identity, database=database,
                               models=models, objects=objects, dry_run=dry_run, reset=reset,
                               allow_migration_mismatch=allow_migration_mismatch, progress=progress, cancel=cancel,
                               before_writing=before_writing, stage=stage)
    except database_errors(connection) as exc:
        raise RestoreError(f"database {database!r} failed during the restore: {first_line(exc)}; "
                           + _what_is_left(stage)) from exc
    except OSError as exc:
        if not is_out_of_space(exc):
            raise
        folder = Path(exc.filename).parent if exc.filename else Path(dbs_settings.PRIVATE_ROOT)
        raise RestoreError(out_of_space(folder, "restoring") + "; " + _what_is_left(stage)
                           + " Free some space there and restore again.") from exc


def _what_is_left(stage: dict) -> str:
    if stage["reset"]:
        return ("it failed after --reset rebuilt the schema, so the database is empty now (the console's records "
                "were kept): restore again, or restore the safety backup.")
    return "nothing was restored."


def _restore_backup(source, *, target, passphrase, identity, database, models, objects, dry_run, reset,
                    allow_migration_mismatch, progress, cancel, before_writing, stage: dict) -> RestoreResult:
    sweep_leftovers()  # what a killed backup or restore on this host left behind
    started = time.monotonic()
    reporter = Reporter(progress, cancel)
    connection = connections[database]
    selection = Selection.parse(list(models or []), list(objects or []))
    with _opened(source, target, passphrase, identity) as (reader, origin, reopen):
        summary = reader.manifest
        kind = summary.get("kind")
        if kind not in ("logical", "native"):
            raise RestoreError("this sealed file is not a dbs_admin database backup (its manifest has no kind)")
        if not allow_migration_mismatch:
            manifest_mod.check_migrations(summary.get("migrations", []), connection)
        if kind == "native":
            if selection.partial:
                raise RestoreError("a native backup restores whole; use a logical backup for --models / --object")
            if summary.get("engine") != connection.vendor:
                raise RestoreError(f"this native backup is of a {summary.get('engine')} database and cannot be "
                                   f"restored into {connection.vendor}; use a logical backup across engines")
        if reset and not dry_run:
            from dbs_admin.backups.validate import check_contents

            with reopen() as first_pass:
                check_contents(first_pass, summary)
            if before_writing is not None:
                before_writing()
            with _console_kept(database) as notes:
                stage["reset"] = True
                reset_schema(database)
                result = _restore(reader, summary, kind, database, selection, allow_migration_mismatch, reporter,
                                  started)
            return dataclasses.replace(result, changes=result.changes + notes, source=origin)
        elif not dry_run and kind == "logical":
            missing = manifest_mod.unapplied_in_database(connection)
            if missing:
                raise RestoreError(f"database {database!r} lacks migrations ({', '.join(missing[:5])}): run "
                                   f"manage.py migrate --database {database} first, or restore with --reset")
        if before_writing is not None and not dry_run:
            before_writing()
        result = _restore(reader, summary, kind, database, selection, allow_migration_mismatch, reporter, started,
                          dry_run=dry_run)
        return dataclasses.replace(result, source=origin)


@contextmanager
def _opened(source, target: str | None, passphrase, identity) -> Iterator[tuple[Any, str, Callable[[], Any]]]:
    """``(reader, where it was read from, a function opening it again)`` of a sealed file or a repository snapshot."""
    repo_target = get_target(target) if target else None
    if repo_target is not None and is_repository(repo_target):
        from dbs_admin.backups import repository

        name = Path(str(source)).name

        def reopen_snapshot():
            return repository.open_snapshot(repo_target, name, passphrase=passphrase, identity=identity)

        with reopen_snapshot() as reader:
            yield reader, f"target {repo_target.name!r}", reopen_snapshot
        return
    with readable_copy(source, target) as (path, origin), \
            open_sealed(path, passphrase=passphrase, identity=identity) as reader:
        yield reader, origin, lambda: open_sealed(path, passphrase=passphrase, identity=identity)


def _restore(reader, summary: dict, kind: str, database: str, selection: Selection, allow_mismatch: bool,
             reporter: Reporter, started: float, *, dry_run: bool = False) -> RestoreResult:
    if kind == "native":
        return _restore_native(reader, summary, database, dry_run, reporter, started)
    job = LogicalRestore(database, selection, dry_run=dry_run, allow_mismatch=allow_mismatch,
                         manifest=summary, reporter=reporter)
    job.run(reader)
    return RestoreResult(
        database=database, dry_run=dry_run, rows=dict(job.rows_written), files=job.files_written,
        healed_blocks=len(reader.healed_blocks), changes=list(summary_lines(job)),
        seconds=time.monotonic() - started,
    )


@contextmanager
def _console_kept(database: str) -> Iterator[list[str]]:
    """Set the console's records aside before a reset and load them back afterwards (even if the restore failed:
    the rebuilt database must not lose the log of what happened)."""
    from dbs_admin.backups import own_tables

    notes: list[str] = []
    work = private_dir("reset")
    kept = work / "console-records"
    try:
        try:
            keep = own_tables.set_aside(database, kept)
        except DatabaseError as exc:
            log.warning("the console's records could not be read before the reset (%s); they are not kept", exc)
            keep = False
        try:
            yield notes
        finally:
            if keep:
                try:
                    notes += ["console records kept across the reset"] + own_tables.put_back(database, kept)
                except Exception as exc:  # noqa: BLE001 - the restore's own outcome matters more
                    log.error("the console's records could not be put back after the reset: %s", exc)
                    notes.append(f"console records could NOT be put back: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _restore_native(reader, summary: dict, database: str, dry_run: bool, reporter: Reporter,
                    started: float) -> RestoreResult:
    work = private_dir("restore")
    staged = None
    try:
        staged = native.stage(reader, work, dry_run=dry_run, reporter=reporter, summary=summary)
        counts = dict(summary.get("counts", {}))
        verb = "would replace" if dry_run else "replaced"
        changes = [f"whole database {database!r} ({summary.get('engine')}): {verb} by the backup's "
                   f"{sum(counts.values())} row(s); the console's own tables are kept",
                   f"files: {'would write' if dry_run else 'wrote'} {staged.files}"]
        if not dry_run:
            reporter.report("database", 0, None, force=True)
            try:
                if summary.get("engine") == "sqlite":
                    native_sqlite.carry_console_tables(staged.dump_path, database)
                staged.staging.apply()
                if summary.get("engine") == "sqlite":
                    native_sqlite.swap_in(staged.dump_path, database)
                elif summary.get("engine") == "mysql":
                    from dbs_admin.backups import native_mysql

                    native_mysql.restore(staged.dump_path, database)
                else:
                    from dbs_admin.backups import native_postgres

                    native_postgres.restore(staged.dump_path, database)
                staged.staging.committed()
            except BaseException:
                staged.staging.rollback()
                raise
        return RestoreResult(database=database, dry_run=dry_run, rows=counts, files=staged.files,
                             healed_blocks=len(reader.healed_blocks), changes=changes,
                             seconds=time.monotonic() - started)
    finally:
        if staged is not None:
            staged.staging.cleanup()
        shutil.rmtree(work, ignore_errors=True)
