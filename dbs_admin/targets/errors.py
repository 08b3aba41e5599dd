"""Errors of the places sealed files live (a local folder, an SFTP server), each saying what to do."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from dbs_admin.errors import DbsError


class TargetError(DbsError):
    """A target failed: unreachable, unknown host key, upload mismatch, a name that is not allowed."""


class TargetConfigError(TargetError, ImproperlyConfigured):
    """``DBS_ADMIN["TARGETS"]`` names no such target, or an entry is malformed."""


class StoredFileMissingError(TargetError):
    """The target holds no file of that name."""


class BackupExistsError(DbsError):
    """A backup of that name already exists; names are never reused or overwritten."""
