"""Where a job's files live on this host, and the only way leftovers are removed.

Why one module: the runner (a job ending), the reaper (a job whose worker
died) and the tasks (staging folders of backups) all clean up, and none may
delete anything outside the private root or a local target's folder.

A remote leftover is recorded as ``remote:<target>/<backup name>``: what an
interrupted upload of that backup left on a storage target (an incomplete
multipart upload, an unpublished object) is discarded through the target,
which never touches a published backup.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from dbs_admin.conf import dbs_settings
from dbs_admin.models import Job

log = logging.getLogger("dbs_admin.jobs")


def private_root() -> Path:
    return Path(dbs_settings.PRIVATE_ROOT)


def job_dir(job: Job) -> Path:
    """A private scratch folder per job (outside MEDIA_ROOT), removed when the job ends."""
    return private_root() / "jobs" / str(job.pk)


def alive_file(job: Job) -> Path:
    return private_root() / "jobs" / f"{job.pk}.alive"


def _deletable_roots() -> list[Path]:
    """Folders partial files may live in; anything else is never deleted by the reaper."""
    roots = [private_root()]
    for conf in dbs_settings.TARGETS.values():
        if conf.get("kind") == "local" and conf.get("path"):
            roots.append(Path(conf["path"]))
    return [r.resolve() for r in roots]


REMOTE = "remote:"


def remote_entry(target: str, name: str) -> str:
    return f"{REMOTE}{target}/{name}"


def _discard_remote(entry: str) -> list[str]:
    from dbs_admin.targets import get_target

    target, _, name = entry[len(REMOTE):].partition("/")
    try:
        discard = getattr(get_target(target), "discard", None)
        return [f"{target}:{n}" for n in discard(name)] if discard is not None else []
    except Exception:  # noqa: BLE001 - logged; the retention sweep and the bucket's lifecycle rule remain
        log.warning("could not remove what an interrupted upload of %s left on target %s", name, target,
                    exc_info=True)
        return []


def remove_partial_files(paths: list[str]) -> list[str]:
    """Remove files, folders and ``*`` patterns under the private root or a local target, and remote leftovers
    (``remote:`` entries); return what went."""
    removed: list[str] = []
    roots = _deletable_roots()
    for entry in paths or []:
        if entry.startswith(REMOTE):
            removed += _discard_remote(entry)
            continue
        p = Path(entry)
        candidates = list(p.parent.glob(p.name)) if "*" in p.name else [p]
        for c in candidates:
            resolved = c.resolve()
            if not any(resolved.is_relative_to(r) and resolved != r for r in roots):
                log.warning("not removing %s: outside the private root and local targets", c)
                continue
            if c.is_dir():
                shutil.rmtree(c, ignore_errors=True)
                removed.append(str(c))
            elif c.exists() or c.is_symlink():
                c.unlink(missing_ok=True)
                removed.append(str(c))
    return removed
