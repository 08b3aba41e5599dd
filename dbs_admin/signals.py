"""Django signals for other apps: a backup, a restore or a drill started, finished or failed.

A foundation (like ``models`` and ``conf``): every layer may import it and it
imports none, so the services that do the work send these signals whoever
started it (the console's jobs, the schedule, the ``dbs_*`` commands, the
Python API), and apps hook them without importing a layer.

Every signal is sent with these keyword arguments:

- ``job``: the console ``Job`` running the work (Back up now, Restore…, Run
  drill, the schedule), or None (a command, the Python API);
- ``backup``: the ``Backup`` record concerned, when there is one (a new
  backup's once it is recorded; the restored or drilled one);
- ``outcome``: ``"started"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``;

and, by signal: ``backup_started`` (``kind``, ``target``, ``label``),
``backup_finished`` (``result``: a ``BackupResult``), ``backup_failed``
(``error``, ``message``); ``restore_started`` (``source``, ``database``),
``restore_finished`` (``result``: a ``RestoreResult``), ``restore_failed``
(``error``, ``message``); ``drill_started``, ``drill_finished`` (it passed)
and ``drill_failed`` (it failed, or was cancelled), each with ``report`` (the
``DrillReport``). ``*_failed`` covers cancellation too
(``outcome="cancelled"``). The sender is ``Backup`` for backups and
restores, ``DrillReport`` for drills. A dry run restores nothing and sends
nothing.

Receivers run in the process doing the work (a Celery worker for console
jobs) and are called with ``send_robust``: a receiver that raises is logged
and never fails, delays or hides the backup. A drill's restore into its
scratch database is part of the drill: it sends ``drill_*``, not ``restore_*``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from django.dispatch import Signal

log = logging.getLogger("dbs_admin")

backup_started = Signal()
backup_finished = Signal()
backup_failed = Signal()
restore_started = Signal()
restore_finished = Signal()
restore_failed = Signal()
drill_started = Signal()
drill_finished = Signal()
drill_failed = Signal()

STARTED, SUCCEEDED, FAILED, CANCELLED = "started", "succeeded", "failed", "cancelled"

_job: ContextVar[Any] = ContextVar("dbs_admin_job", default=None)
_muted: ContextVar[bool] = ContextVar("dbs_admin_signals_muted", default=False)


def set_current_job(job: Any) -> Token:
    """The jobs layer says which Job the work in this context belongs to (reset with the returned token)."""
    return _job.set(job)


def reset_current_job(token: Token) -> None:
    _job.reset(token)


def current_job() -> Any:
    return _job.get()


@contextmanager
def muted() -> Iterator[None]:
    """No backup/restore signals inside the block (a drill's own restore into its scratch database)."""
    token = _muted.set(True)
    try:
        yield
    finally:
        _muted.reset(token)


@contextmanager
def announced(started: Signal, finished: Signal, failed: Signal, sender: Any, *,
              cancelled: tuple[type[BaseException], ...] = (), **common: Any) -> Iterator[dict[str, Any]]:
    """Send ``started`` now, then ``finished`` or ``failed`` (re-raising) with what the block put in the dict
    it yields (``result``, ``backup``, ...). An exception of a ``cancelled`` type is outcome "cancelled"."""
    send(started, sender, outcome=STARTED, **common)
    found: dict[str, Any] = {}
    try:
        yield found
    except BaseException as exc:
        outcome = CANCELLED if isinstance(exc, cancelled) else FAILED
        send(failed, sender, outcome=outcome, **{**common, **found, "error": exc,
                                                 "message": str(exc) or type(exc).__name__})
        raise
    send(finished, sender, outcome=SUCCEEDED, **{**common, **found})


def send(signal: Signal, sender: Any, *, outcome: str, backup: Any = None, **kwargs: Any) -> None:
    """Send ``signal`` with the current job; a receiver's exception is logged, never raised."""
    if _muted.get() and signal not in (drill_started, drill_finished, drill_failed):
        return
    for receiver, response in signal.send_robust(sender=sender, job=current_job(), backup=backup, outcome=outcome,
                                                 **kwargs):
        if isinstance(response, Exception):
            log.error("a receiver of a dbs_admin signal failed (%r): %s", receiver, response,
                      exc_info=(type(response), response, response.__traceback__))
