"""``create_backup``: snapshot, stream, seal, verify, store on each target, record.

Why in this order: the manifest summary is computed inside the snapshot
before a byte is streamed (the container may need it up front); the sealed
writer verifies what it wrote before the file gets its name; each copy on a
target is verified again (size and hash, and the container's own check for a
local copy) before the backup is recorded (``copies.py``: one target failing
fails its copy, not the others). Any failure or cancel removes partial
output: nothing that looks like a backup is left behind.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils import timezone

from dbs_admin import signals
from dbs_admin.backups import copies as copies_mod
from dbs_admin.backups import logical_capture, manifest, mysql_session, native, native_sqlite
from dbs_admin.backups.catalog import record_backup
from dbs_admin.backups.errors import BackupError, BackupExistsError, CancelledError
from dbs_admin.backups.failures import is_out_of_space, out_of_space
from dbs_admin.backups.pipeline import seal_in_background as seal
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.sealing_keys import sealing_keys
from dbs_admin.backups.selection import backed_up_models
from dbs_admin.backups.sources import private_dir, sweep_leftovers
from dbs_admin.backups.sources import target as get_target
from dbs_admin.backups.types import BackupResult
from dbs_admin.conf import dbs_settings
from dbs_admin.models import Backup
from dbs_admin.sealed import SealedError
from dbs_admin.sealed.errors import DestinationExistsError
from dbs_admin.targets.base import is_repository
from dbs_admin.targets.naming import backup_file_name

log = logging.getLogger("dbs_admin.backups")
KINDS = ("logical", "native")


def _seal_logical(database: str, dest: Path | None, head: dict, keys: dict, reporter: Reporter, *,
                  write=seal) -> tuple[Any, dict]:
    connection = connections[database]
    with logical_capture.snapshot(database):
        carried = backed_up_models()
        mysql_session.refuse_non_transactional(connection, [m._meta.db_table for m in carried], error=BackupError)
        mysql_session.refuse_zero_dates(connection, carried)
        counts = logical_capture.count_rows(database)
        summary = manifest.summary(
            kind="logical", engine=connection.vendor, label=head["label"], created_at=head["_created"],
            counts=counts, migrations=manifest.migration_state(connection),
            files=logical_capture.count_file_references(database),
        )
        body = logical_capture.stream(database, head=_public(head), reporter=reporter, total_rows=sum(counts.values()),
                                      manifest=summary)
        report = write(body, dest, manifest=summary, file_sha256=True, **keys)
    return report, summary


def _count_in_snapshot(summary: dict, database: str) -> None:
    """Complete a native backup's manifest with the row counts and migrations, read in the capture's snapshot.

    Why after the dump: the dump tool starts as soon as the snapshot is open and is the backup's critical path;
    counted before, it sat on its full pipe while every table was counted. The snapshot is the same either way
    (the capture's transaction stays open until the payload ends), and the manifest is read only at the end.
    """
    connection = connections[database]
    counts = logical_capture.count_rows(database)
    summary.update(manifest.counted(counts, manifest.migration_state(connection)))


def _seal_native(database: str, dest: Path | None, head: dict, keys: dict, reporter: Reporter, *,
                 write=seal) -> tuple[Any, dict]:
    connection = connections[database]
    vendor = connection.vendor
    common = {"kind": "native", "engine": vendor, "label": head["label"], "created_at": head["_created"]}
    if vendor == "sqlite":
        work = private_dir("native")
        try:
            copy = work / "db.sqlite3"
            counts = native_sqlite.capture(database, copy)
            media = native.media_files()
            summary = manifest.summary(**common, counts=counts, migrations=manifest.migration_state(connection),
                                       files=len(media), extra={"dump_format": "sqlite3"})
            body = native.stream(_public(head), native_sqlite.dump_chunks(copy),
                                 {"engine": "sqlite", "format": "sqlite3"}, reporter, manifest=summary,
                                 dump_size=copy.stat().st_size, entries=media)
            report = write(body, dest, manifest=summary, file_sha256=True, **keys)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return report, summary
    if vendor == "postgresql":
        from dbs_admin.backups import native_postgres, sizing

        native_postgres.check_tool("pg_dump", database)
        with logical_capture.snapshot(database):
            snapshot_id = native_postgres.export_snapshot(database)
            media = native.media_files()
            summary = manifest.summary(**common, counts={}, migrations=[], files=len(media),
                                       extra={"dump_format": "pg_dump-custom",
                                              "server_version": connection.pg_version})
            body = native.stream(_public(head), native_postgres.dump_chunks(database, snapshot_id),
                                 {"engine": "postgresql", "format": "pg_dump-custom"}, reporter, manifest=summary,
                                 dump_size=sizing.dump_bytes(database), entries=media,
                                 after_dump=lambda: _count_in_snapshot(summary, database))
            report = write(body, dest, manifest=summary, file_sha256=True, **keys)
        return report, summary
    if vendor == "mysql":
        from dbs_admin.backups import native_mysql, sizing

        native_mysql.refuse_unswappable(database)
        mysql_session.refuse_non_transactional(connection, connection.introspection.table_names(), error=BackupError)
        with native_mysql.consistent_dump(database) as dump:
            media = native.media_files()
            summary = manifest.summary(**common, counts={}, migrations=[], files=len(media),
                                       extra={"dump_format": "mariadb-dump-sql",
                                              "server_version": ".".join(map(str, connection.mysql_version))})
            body = native.stream(_public(head), dump.chunks(), {"engine": "mysql", "format": "mariadb-dump-sql"},
                                 reporter, manifest=summary, dump_size=sizing.dump_bytes(database), entries=media,
                                 after_dump=lambda: _count_in_snapshot(summary, database))
            report = write(body, dest, manifest=summary, file_sha256=True, **keys)
        return report, summary
    raise BackupError(f"native backups support SQLite, PostgreSQL and MariaDB/MySQL, not {vendor}; use --kind logical")


def _create_snapshot(store, name, kind, label, created_at, database, keys, reporter, user) -> BackupResult:
    """A backup to one repository target alone: the same capture, stored as an incremental snapshot
    (backups/repository.py); no sealed file is made."""
    from dbs_admin.backups import repository

    head = {"format": 1, "kind": kind, "engine": connections[database].vendor, "label": label,
            "created_at": created_at, "_created": created_at, "database": database}
    sealer = _seal_logical if kind == "logical" else _seal_native

    def write(body, dest, *, manifest, file_sha256, **_keys):
        return repository.write_snapshot(store, name, body, manifest, keys)

    try:
        report, summary = sealer(database, None, head, keys, reporter, write=write)
    except SealedError as exc:
        raise BackupError(f"writing the snapshot to target {store.name!r} failed: {exc}") from exc
    backup = record_backup(
        name=name, kind=kind, label=label, created_at=created_at, user=user, engine=summary["engine"],
        size=report.added_bytes, sha256="", key_slots=report.key_slots,
        manifest={**summary, REPOSITORIES: {store.name: _repository_figures(store, report)}},
        copies=[(store.name, name)],
    )
    reporter.report("done", 1, 1, force=True)
    log.info("snapshot %s written to repository %s (%s, %d bytes added)", name, store.name, kind, report.added_bytes)
    return BackupResult(
        name=name, path=Path(name), kind=kind, size=report.added_bytes, sha256="", created_at=created_at,
        manifest=summary, key_slots=report.key_slots, targets=[store.name], backup_id=backup.pk, failed={},
    )


def _snapshot_report() -> type:
    from dbs_admin.backups.repository import SnapshotReport

    return SnapshotReport


REPOSITORIES = "repositories"  # in the Backup row's manifest: per repository target, bytes added and total


def _repository_figures(store, report) -> dict:
    """What the Backups list and the dashboard show of a snapshot: what it added, and the repository's size
    once it was added (the size over time; a later collection makes the repository smaller, not this)."""
    try:
        total = store.total_size()
    except OSError:
        total = None
    return {"added": report.added_bytes, "total": total}


def _teed_write(repo_stores, name, keys, snapshots: dict):
    """A ``write`` for the sealers: the sealed file as usual, the same pieces also written as a snapshot to
    each repository target (``repository.SnapshotTee``); each snapshot's outcome lands in ``snapshots``."""
    from dbs_admin.backups import repository


    def write(body, dest, *, manifest, **options):
        tee = repository.SnapshotTee(repo_stores, name, manifest, keys)
        try:
            report = seal(tee.wrap(body), dest, manifest=manifest, **options)
        except BaseException:
            tee.abort(BackupError("the capture or the sealed file failed; the snapshot was not committed"))
            for store in repo_stores:  # committed just before the file failed: forgotten, as a partial file is removed
                if isinstance(tee.results.get(store.name), repository.SnapshotReport):
                    try:
                        store.delete(name)
                    except Exception as exc:  # noqa: BLE001 - the backup's own failure is what is raised
                        log.warning("could not forget snapshot %s on %s after the failure: %s", name, store.name, exc)
            raise
        snapshots.update(tee.finish())
        return report

    return write


def _public(head: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in head.items() if not k.startswith("_")}


def _target_names(target: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if target is None or isinstance(target, str):
        return [target] if target else [""]
    return copies_mod.unique([t for t in target if t]) or [""]


def create_backup(
    *, kind: str = "logical", target: str | list[str] | None = None, output: str | Path | None = None,
    label: str = "", passphrase: str | None = None, recipients: list[str] | None = None, database: str = "default",
    user: Any = None, progress=None, cancel=None,
) -> BackupResult:
    """Write a sealed backup of ``database`` and its files to ``target`` (or ``output``), verified.

    ``target`` is a target name or a list of them (several copies, each
    verified on its own; a failed copy is recorded and returned in
    ``failed``, and only when none could be stored does the backup fail).
    With neither passphrase nor recipients, ``DBS_ADMIN["RECIPIENTS"]`` is used;
    with none of the three, KeyMissingError. Records a ``Backup`` row. Sends
    ``backup_started``, then ``backup_finished`` or ``backup_failed`` (``dbs_admin.signals``).
    """
    where = None if output is not None else (target or dbs_settings.DEFAULT_TARGET)
    with signals.announced(signals.backup_started, signals.backup_finished, signals.backup_failed, Backup,
                           cancelled=(CancelledError,), kind=kind, target=where, label=label) as outcome:
        result = _create_backup(kind=kind, target=target, output=output, label=label, passphrase=passphrase,
                                recipients=recipients, database=database, user=user, progress=progress,
                                cancel=cancel)
        outcome.update(result=result, backup=Backup.objects.filter(pk=result.backup_id).first())
    return result


def _create_backup(*, kind, target, output, label, passphrase, recipients, database, user, progress,
                   cancel) -> BackupResult:
    if kind not in KINDS:
        raise BackupError(f"unknown backup kind {kind!r}; use one of {', '.join(KINDS)}")
    keys = sealing_keys(passphrase, recipients).as_writer_options()
    sweep_leftovers()  # what a killed backup or restore on this host left behind
    reporter = Reporter(progress, cancel)
    created_at = timezone.now()
    name = backup_file_name(created_at, kind, label)
    stores = []
    repo_stores = []
    work = None
    outcome = copies_mod.Copies()
    if output is not None:
        dest = Path(output)
        if dest.is_dir():
            dest = dest / name
        name = dest.name
        if dest.exists() or dest.is_symlink():
            raise BackupExistsError(f"{dest} already exists; backups are never overwritten, choose another name")
        if Backup.objects.filter(name=name).exists():
            raise BackupExistsError(f"a backup named {name} is already recorded; names are never reused")
    else:
        stores = [get_target(t or None) for t in _target_names(target)]
        repo_stores = [s for s in stores if is_repository(s)]
        if len(stores) == 1 and repo_stores:
            return _create_snapshot(stores[0], name, kind, label, created_at, database, keys, reporter, user)
        outcome = copies_mod.preflight(stores, name)
        repo_stores = [s for s in repo_stores if s.name not in outcome.failed]
        stores = [s for s in stores if not is_repository(s)]
        work = private_dir("create")
        dest = work / name
    head = {"format": 1, "kind": kind, "engine": connections[database].vendor, "label": label,
            "created_at": created_at, "_created": created_at, "database": database}
    sealer = _seal_logical if kind == "logical" else _seal_native
    snapshots: dict = {}
    options = {"write": _teed_write(repo_stores, name, keys, snapshots)} if repo_stores else {}
    figures = {}
    try:
        try:
            report, summary = sealer(database, dest, head, keys, reporter, **options)
        except DestinationExistsError as exc:
            raise BackupExistsError(str(exc)) from None
        except OSError as exc:
            if not is_out_of_space(exc):
                raise
            where = "DBS_ADMIN['PRIVATE_ROOT']" if work is not None else "--output"
            raise BackupError(
                out_of_space(work.parent if work is not None else dest.parent, "writing the backup")
                + f"; nothing was written and earlier backups are untouched. Free some space there, or point "
                f"{where} at a larger disk."
            ) from exc
        reporter.report("verifying", 0, None, force=True)
        sha = report.sha256  # file_sha256=True: hashed while writing and reading back
        size = dest.stat().st_size
        final_path = dest
        for store in repo_stores:  # each snapshot stands or fails alone, as each file copy does
            written = snapshots.get(store.name)
            if isinstance(written, _snapshot_report()):
                outcome.stored.append((store.name, name))
                figures[store.name] = _repository_figures(store, written)
            else:
                log.warning("the snapshot of %s on target %s failed: %s", name, store.name, written)
                outcome.fail(store.name, BackupError(f"the snapshot failed: {written}"))
        if stores:
            copies_mod.store_all(stores, outcome, dest, name, sha, size, reporter)
            final_path = outcome.local_path or Path(name)
        elif repo_stores:
            outcome.raise_if_none_stored(repo_stores)
            final_path = Path(name)
        else:
            outcome.stored.append(("", str(dest.resolve())))
    except SealedError as exc:
        raise BackupError(f"writing the sealed file failed: {exc}") from exc
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    backup = record_backup(
        name=name, kind=kind, label=label, created_at=created_at, user=user, engine=summary["engine"], size=size,
        sha256=sha, key_slots=report.key_slots, manifest={**summary, REPOSITORIES: figures} if figures else summary,
        copies=outcome.stored, failed=outcome.failed,
    )
    reporter.report("done", 1, 1, force=True)
    log.info("backup %s written (%s, %d bytes)", name, kind, size)
    return BackupResult(
        name=name, path=final_path, kind=kind, size=size, sha256=sha, created_at=created_at, manifest=summary,
        key_slots=report.key_slots, targets=[t for t, _ in outcome.stored if t], backup_id=backup.pk,
        failed=dict(outcome.failed),
    )
