"""The public Python API of backups and restores.

Every face of the product (management commands, Celery tasks behind the
console, restore drills) calls these functions, so behaviour and error
handling are the same everywhere. Secrets are arguments only: they are never
stored, logged or put in a result.

Progress: ``progress(stage, done, total)`` is called from time to time (the
callee throttles; callers may be slow, e.g. a database write). ``cancel()`` is
polled between batches; when it returns True the operation stops, removes its
partial output, and raises CancelledError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

Progress = Callable[[str, int, "int | None"], None]
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class BackupResult:
    name: str  # file name, unique, the same on every target
    path: Path  # local path of the sealed file (in the target folder, or --output)
    kind: str  # "logical" | "native"
    size: int
    sha256: str  # of the whole sealed file
    created_at: datetime
    manifest: dict[str, Any]  # summary: engine, counts per model, file count/bytes, migrations, versions, label
    key_slots: list[dict[str, Any]]  # public description of the slots (no secrets)
    targets: list[str] = field(default_factory=list)  # names of the targets that hold a verified copy
    backup_id: int | None = None  # the dbs_admin.Backup row recorded for it


@dataclass(frozen=True)
class RestoreResult:
    database: str  # alias restored into
    dry_run: bool
    rows: dict[str, int]  # rows written (or that would be written) per model label
    files: int  # files written (or that would be)
    healed_blocks: int  # > 0 when the sealed file was damaged and healed on the fly
    changes: list[str] = field(default_factory=list)  # human-readable plan (dry run) or summary
    seconds: float = 0.0


@dataclass(frozen=True)
class ValidationResult:
    ok: bool  # True when every byte is (or was healed to be) exactly what was written
    decrypted: bool  # True when the key was given and every chunk authenticated
    healed_blocks: list[int]
    unrecoverable_blocks: list[int]
    healing_margin: float | None
    manifest: dict[str, Any] | None  # available when decrypted
    message: str = ""


def create_backup(
    *,
    kind: str = "logical",
    target: str | None = None,
    output: str | Path | None = None,
    label: str = "",
    passphrase: str | None = None,
    recipients: Sequence[str] | None = None,
    database: str = "default",
    user: Any = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> BackupResult:
    """Write a sealed backup of ``database`` and its files to ``target`` (or ``output``), verified.

    With neither passphrase nor recipients, ``DBS_ADMIN["RECIPIENTS"]`` is used;
    with none of the three, KeyMissingError. Records a ``Backup`` row.
    """
    params = dict(locals())
    from dbs_admin.backups.create import create_backup as _impl

    return _impl(**params)


def restore_backup(
    source: str | Path,
    *,
    target: str | None = None,
    passphrase: str | None = None,
    identity: Any = None,
    database: str = "default",
    models: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    dry_run: bool = False,
    reset: bool = False,
    allow_migration_mismatch: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    before_writing: Callable[[], Any] | None = None,
) -> RestoreResult:
    """Restore a sealed backup into ``database``: all or nothing.

    ``source`` is a path, or a backup name on ``target``. ``models`` restricts
    to "app_label.Model" labels; ``objects`` to "app_label.Model:pk" entries.
    Refuses a migration mismatch (MigrationMismatchError) unless allowed.
    ``before_writing`` is called once every check that needs no writing has
    passed (key, kind, migrations; with ``reset`` the whole contents), just
    before the first write; if it raises, nothing is written.
    """
    params = dict(locals())
    from dbs_admin.backups.restore import restore_backup as _impl

    return _impl(**params)


def validate_backup(
    source: str | Path,
    *,
    target: str | None = None,
    passphrase: str | None = None,
    identity: Any = None,
    decrypt: bool = False,
) -> ValidationResult:
    """Check a sealed backup: structure, hashes and parity; with ``decrypt``, every chunk authenticated."""
    params = dict(locals())
    from dbs_admin.backups.validate import validate_backup as _impl

    return _impl(**params)


def read_manifest(
    source: str | Path, *, target: str | None = None, passphrase: str | None = None, identity: Any = None
) -> dict[str, Any]:
    """The backup's manifest summary (needs the key: the manifest is encrypted)."""
    params = dict(locals())
    from dbs_admin.backups.validate import read_manifest as _impl

    return _impl(**params)
