"""Errors of backups and restores that users can meet, each with a message saying what to do."""

from __future__ import annotations

from dbs_admin.errors import DbsError
from dbs_admin.targets.errors import BackupExistsError, TargetError

__all__ = [  # BackupExistsError and TargetError are the targets' own, re-exported for the callers of backups
    "BackupError", "BackupExistsError", "CancelledError", "IntegrityCheckError", "KeyMissingError",
    "MigrationMismatchError", "PayloadError", "RestoreError", "TargetError", "ToolMissingError", "UnsafePathError",
]


class BackupError(DbsError):
    """Base class of backup and restore errors (targets raise ``TargetError``, also a ``DbsError``)."""


class KeyMissingError(BackupError):
    """No passphrase and no recipient (or identity) was given, and prompting is not possible."""


class MigrationMismatchError(BackupError):
    """The backup's migration state differs from the code's; ``diff`` says how."""

    def __init__(self, message: str, *, only_in_backup: list[str], only_in_code: list[str]):
        super().__init__(message)
        self.only_in_backup = only_in_backup
        self.only_in_code = only_in_code


class RestoreError(BackupError):
    """A restore failed; nothing was changed (the database and media are as before)."""


class UnsafePathError(RestoreError):
    """A file in the backup would be written outside MEDIA_ROOT or the configured file roots."""


class CancelledError(BackupError):
    """The job was cancelled; partial output was removed."""


class ToolMissingError(BackupError):
    """An external tool a native backup needs (pg_dump, pg_restore) is missing or too old."""


class PayloadError(RestoreError):
    """The decrypted contents are not a well-formed backup stream (corrupt, truncated or foreign)."""


class IntegrityCheckError(RestoreError):
    """A restored file or table does not match the hashes and counts the backup recorded."""
