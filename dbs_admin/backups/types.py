"""What the backup services take and return: progress and cancel callbacks, and the result records.

Why a module of their own: the implementations (create, restore, validate)
and every caller import these, and ``api.py`` only re-exports, so nothing
imports back up the chain.

Progress: ``progress(stage, done, total)`` is called from time to time (the
callee throttles; callers may be slow, e.g. a database write). ``cancel()`` is
polled between batches; when it returns True the operation stops, removes its
partial output, and raises CancelledError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

Progress = Callable[[str, int, "int | None"], None]
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class BackupResult:
    name: str  # file name, unique, the same on every target
    path: Path  # local path of the sealed file (in the target folder, or --output)
    kind: str  # "logical" | "native"
    size: int
    sha256: str  # of the whole sealed file
    created_at: datetime
    manifest: dict[str, Any]  # summary: engine, counts per model, file count/bytes, migrations, versions, label
    key_slots: list[dict[str, Any]]  # public description of the slots (no secrets)
    targets: list[str] = field(default_factory=list)  # names of the targets that hold a verified copy
    backup_id: int | None = None  # the dbs_admin.Backup row recorded for it
    failed: dict[str, str] = field(default_factory=dict)  # target name -> why its copy failed (others are stored)


@dataclass(frozen=True)
class RestoreResult:
    database: str  # alias restored into
    dry_run: bool
    rows: dict[str, int]  # rows written (or that would be written) per model label
    files: int  # files written (or that would be)
    healed_blocks: int  # > 0 when the sealed file was damaged and healed on the fly
    changes: list[str] = field(default_factory=list)  # human-readable plan (dry run) or summary
    seconds: float = 0.0
    source: str = ""  # where the backup was read from: "target 'offsite'", or a path


@dataclass(frozen=True)
class ValidationResult:
    ok: bool  # True when every byte is (or was healed to be) exactly what was written
    decrypted: bool  # True when the key was given and every chunk authenticated
    healed_blocks: list[int]
    unrecoverable_blocks: list[int]
    healing_margin: float | None
    manifest: dict[str, Any] | None  # available when decrypted
    message: str = ""
    intact: bool = False  # True when no copy of anything was damaged (nothing needed healing)

    @property
    def exit_code(self) -> int:
        """The rescue CLI's status (``python -m dbs_admin.sealed verify``): 0 intact, 1 damaged but healed
        (or healable), 2 unrecoverable or not authentic. A wrong key is 3, raised before a result exists."""
        if not self.ok:
            return 2
        return 0 if self.intact else 1
