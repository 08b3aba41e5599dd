"""Work folders owned by a live process, and the sweep of those whose process died (kill -9, OOM, power).

Why: a backup stages its sealed file in ``PRIVATE_ROOT/create-*``, a restore
stages files in ``.dbs-restore-*`` beside each root; a process killed half-way
cannot remove them, and nobody looks there. Each such folder records its
owner (host, pid and the process's start time, so a reused pid is not mistaken
for the owner); the next backup, restore or job-reaper run on the same host
removes the folders whose owner is gone. A folder of another host is never
touched (its owner may be alive there); one whose owner file is missing is
removed only once it has not changed for ``UNOWNED_AFTER``.

A restore's staging folder can hold more than leftovers: files it had set
aside while moving restored ones into place. ``moves`` journals each move
before it happens and ``committed`` marks the database commit, so a sweep
of a restore that died before committing puts the old files back first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

log = logging.getLogger("dbs_admin.backups")

OWNER = ".owner"
JOURNAL = "moves"
COMMITTED = "committed"
UNOWNED_AFTER = 24 * 3600.0


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where /proc has none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22: after the command name, which may hold spaces


def claim(folder: Path) -> None:
    """Record this process as the owner of ``folder`` (written before anything else goes in)."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}
    (folder / OWNER).write_text(json.dumps(owner))


def _alive(owner: dict) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    start = owner.get("start")
    return start is None or _start_time(pid) in (None, start)


def orphaned(folder: Path, now: float | None = None) -> bool:
    """True when ``folder``'s owner on this host is gone (or it has no owner and has not changed for a day)."""
    try:
        owner = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        try:
            return (now or time.time()) - folder.stat().st_mtime > UNOWNED_AFTER
        except OSError:
            return False
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    return not _alive(owner)


def journal_move(folder: Path, final: Path, aside: Path | None) -> None:
    """Append one move of a restore to its journal, durably, before the move itself."""
    journal_moves(folder, [(final, aside)])


def journal_moves(folder: Path, moves: list[tuple[Path, Path | None]]) -> None:
    """Append moves of a restore to its journal, durably (one fsync), before any of them is made.

    The undo (:func:`_undo_moves`) only acts on what did move: a file set aside that exists, a new file in place.
    """
    with open(folder / JOURNAL, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps([str(final), str(aside) if aside else None]) + "\n" for final, aside in moves))
        f.flush()
        os.fsync(f.fileno())


def mark_committed(folder: Path) -> None:
    (folder / COMMITTED).touch()


def _undo_moves(folder: Path) -> int:
    """Put back what a restore that died before its commit had replaced; returns the files put back."""
    try:
        lines = (folder / JOURNAL).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    restored = 0
    for line in reversed(lines):
        try:
            final, aside = json.loads(line)
        except ValueError:
            continue  # a line torn by the crash: its move never happened
        final_path = Path(final)
        try:
            if aside and Path(aside).exists():
                os.replace(aside, final_path)
                restored += 1
            elif not aside and final_path.is_file():
                final_path.unlink()  # a new file of the dead restore
        except OSError:
            log.warning("could not undo the move of %s by a restore that died", final_path)
    return restored


def sweep(parent: Path, pattern: str) -> list[Path]:
    """Remove the orphaned folders matching ``pattern`` in ``parent`` (undoing a dead restore's moves first)."""
    removed = []
    try:
        candidates = [p for p in parent.glob(pattern) if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    for folder in candidates:
        if not orphaned(folder):
            continue
        if (folder / JOURNAL).exists() and not (folder / COMMITTED).exists():
            put_back = _undo_moves(folder)
            log.warning("a restore that died before committing had replaced %d file(s); they were put back",
                        put_back)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by a process that is gone", folder)
        removed.append(folder)
    return removed
