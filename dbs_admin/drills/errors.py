"""Errors a drill can meet before it has a database to check, each saying what to do."""

from __future__ import annotations


class DrillError(Exception):
    """Base class: the drill could not run (as opposed to ran and found a problem)."""


class ScratchDatabaseError(DrillError):
    """The scratch database could not be created or dropped."""


class CreateDatabaseDenied(ScratchDatabaseError):
    """The PostgreSQL role or MariaDB user of the configured connection may not create a database."""


class NoBackupToDrill(DrillError):
    """``--latest`` found no backup on the target, or the file does not exist."""


class DrillKeyError(DrillError):
    """No key to open the backup: no passphrase, no identity, and no DRILL_IDENTITY configured."""
