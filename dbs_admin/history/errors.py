"""Errors a user of the history feature can hit, each with a message that says what to do."""

from __future__ import annotations


class HistoryError(Exception):
    """Base class of every history error."""


class NotTrackedError(HistoryError):
    """The model has no history: it was never passed to ``track_history()`` in a ``dbs.py``."""


class VersionNotFoundError(HistoryError):
    """The object or version named does not exist in the history tree."""


class CorruptVersionError(HistoryError):
    """A stored version is unreadable or its image bytes do not match their recorded hash."""


class UnsafePathError(HistoryError):
    """A stored path would land outside MEDIA_ROOT or the history root (hostile or corrupt tree)."""


class ImportTreeError(HistoryError):
    """A tree given to ``dbs_history import`` does not have the expected layout."""
