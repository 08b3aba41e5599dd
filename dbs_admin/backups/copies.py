"""One sealed backup stored on each of its targets, every copy published and verified on its own.

Why a module: a backup may go to several targets (``dbs_backup --target a
--target b``, a schedule with copies). A target that fails (a bucket gone,
a server away, a full disk) must fail its own copy, not the others: the
copies that were stored count, the failed ones are recorded with the reason
and reported. Only when no copy at all could be stored does the backup fail
(with the single target's own error when there was one, so its kind, e.g.
a transient network error, still decides whether a job retries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dbs_admin.backups.errors import BackupExistsError, CancelledError
from dbs_admin.backups.progress import Reporter
from dbs_admin.errors import DbsError
from dbs_admin.targets import Target
from dbs_admin.targets.errors import TargetError

log = logging.getLogger("dbs_admin.backups")


@dataclass
class Copies:
    """What became of each copy: ``stored`` as ``(target, location)``, ``failed`` as target -> why."""

    stored: list[tuple[str, str]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    local_path: Path | None = None  # of the first stored copy on a local folder

    def fail(self, target: str, exc: BaseException) -> None:
        self.failed[target] = " ".join(str(exc).split()) or type(exc).__name__
        self.errors[target] = exc

    def raise_if_none_stored(self, targets: list[Target]) -> None:
        """Every copy failed: the single target's own error, or one naming every target."""
        if self.stored or not targets:
            return
        if len(self.errors) == 1:
            raise next(iter(self.errors.values()))
        raise TargetError("no copy of the backup could be stored: " + "; ".join(
            f"target {name!r}: {why}" for name, why in self.failed.items()))


def unique(names: list[str]) -> list[str]:
    """Target names in the order given, each once."""
    return list(dict.fromkeys(names))


def preflight(targets: list[Target], name: str) -> Copies:
    """Before sealing: a name already taken anywhere refuses the backup; an unreachable target fails its copy."""
    copies = Copies()
    for store in targets:
        try:
            taken = store.exists(name)
        except (DbsError, OSError) as exc:
            copies.fail(store.name, exc)
            continue
        if taken:
            raise BackupExistsError(f"target {store.name!r} already holds {name}; backups are never overwritten")
    if len(copies.failed) == len(targets):
        copies.raise_if_none_stored(targets)
    return copies


def store_all(targets: list[Target], copies: Copies, source: Path, name: str, sha256: str, size: int,
              reporter: Reporter) -> Copies:
    """Store ``source`` on every target not failed already, each verified; failures recorded in ``copies``."""
    for store in targets:
        if store.name in copies.failed:
            continue
        reporter.check()
        try:
            location = _store_one(store, source, name, sha256, size, reporter)
        except CancelledError:
            raise
        except (DbsError, OSError) as exc:
            log.warning("the copy of %s on target %s failed: %s", name, store.name, exc)
            copies.fail(store.name, exc)
            continue
        copies.stored.append((store.name, name))
        if copies.local_path is None and location is not None:
            copies.local_path = location
    copies.raise_if_none_stored(targets)
    return copies


def _store_one(store: Target, source: Path, name: str, sha256: str, size: int, reporter: Reporter) -> Path | None:
    """Publish one copy and check it is the file that was sealed; a bad copy is removed."""
    stage = f"uploading to {store.name}"
    adopt = getattr(store, "adopt", None)
    if adopt is not None:
        # A local folder takes the verified file itself (a hard link, no copy): nothing new to re-read.
        stored = adopt(source, name, sha256)
    else:
        extra = {}
        if getattr(store, "reports_verification", False):
            check = f"verifying on {store.name}"
            extra["verify_progress"] = lambda done, total: reporter.report(check, done, total)
        stored = store.put(source, name, progress=lambda done, total: reporter.report(stage, done, total), **extra)
        if not getattr(store, "verifies_on_put", False):
            # Re-read through the target (sidecar and hash) rather than trusting the upload step alone.
            stored = store.verify(name)
    if stored.size != size or stored.sha256 != sha256:
        _quiet_delete(store, name)
        raise TargetError(f"the copy on target {store.name!r} differs from what was written; it was removed")
    return store.local_path(name)


def _quiet_delete(store: Target, name: str) -> None:
    try:
        store.delete(name)
    except Exception:  # noqa: BLE001 - the original failure is what the user must see
        log.warning("could not remove the bad copy %s from target %s", name, store.name)
