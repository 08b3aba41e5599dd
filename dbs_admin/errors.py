"""The root of every error dbs_admin raises for a user to read: ``except DbsError`` catches them all.

A foundation module (no layer, no Django): each layer defines its own errors
under it (``targets.errors``, ``backups.errors``, ``drills.errors``,
``history.errors``), so a command or a job can report any of them in one
line without knowing which layer failed. The container core keeps its own
root (``sealed.errors.SealedError``) because it must work without dbs_admin.
"""

from __future__ import annotations


class DbsError(Exception):
    """An error with a message that says what failed and what to do."""
