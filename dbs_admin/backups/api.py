"""The public Python API of backups and restores (re-exported as ``dbs_admin.create_backup`` etc.).

Every face of the product (management commands, the jobs behind the console,
restore drills) calls these same functions, so behaviour and error handling
are the same everywhere. Secrets are arguments only: they are never stored,
logged or put in a result. This module only re-exports: the implementations
live in ``create``, ``restore`` and ``validate``, the result types in ``types``.
"""

from __future__ import annotations

from dbs_admin.backups.create import create_backup
from dbs_admin.backups.restore import restore_backup
from dbs_admin.backups.types import BackupResult, Cancel, Progress, RestoreResult, ValidationResult
from dbs_admin.backups.validate import read_manifest, validate_backup

__all__ = [
    "BackupResult", "Cancel", "Progress", "RestoreResult", "ValidationResult",
    "create_backup", "read_manifest", "restore_backup", "validate_backup",
]
