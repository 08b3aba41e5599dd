"""Progress reports that never slow a backup down, and the cancel switch polled between batches.

Why throttle here: callers may write progress to the database (the console's
Job row); a report per batch of 2,000 rows would cost more than the batch.
"""

from __future__ import annotations

import time

from dbs_admin.backups.errors import CancelledError
from dbs_admin.backups.types import Cancel, Progress

INTERVAL = 0.5


class Reporter:
    """``report(stage, done, total)`` forwards at most every INTERVAL seconds, and always on a new stage."""

    def __init__(self, progress: Progress | None, cancel: Cancel | None):
        self._progress = progress
        self._cancel = cancel
        self._stage: str | None = None
        self._last = 0.0

    def report(self, stage: str, done: int, total: int | None = None, *, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if force or stage != self._stage or now - self._last >= INTERVAL:
            self._stage, self._last = stage, now
            self._progress(stage, done, total)

    def check(self) -> None:
        """Raise CancelledError when the caller asked to stop."""
        if self._cancel is not None and self._cancel():
            raise CancelledError("the operation was cancelled; partial output was removed")
