"""Restored files are written beside their root first, and moved into place only when everything checked out.

Why: a restore must be all-or-nothing for media too. Every file is staged in
a private folder next to its root (same file system, so the final move is a
rename), its hash verified, and only then moved in; the file it replaces is
set aside, so a failure afterwards (the database commit) puts every old file
back.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

from dbs_admin.backups import leftovers
from dbs_admin.backups.errors import IntegrityCheckError, RestoreError
from dbs_admin.backups.failures import is_out_of_space, out_of_space


class StagedFile:
    """One file being received: bytes go to the staging folder while their sha256 is computed."""

    def __init__(self, path: Path, final: Path):
        self.path = path
        self.final = final
        self._f = open(path, "xb")
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        try:
            self._f.write(chunk)
        except OSError as exc:
            if not is_out_of_space(exc):
                raise
            raise RestoreError(out_of_space(self.path.parent.parent, "staging what the backup restores")
                               + "; nothing was restored. Free some space there and restore again.") from exc
        self._digest.update(chunk)
        self.size += len(chunk)

    def finish(self, size: int, sha256: str, name: str) -> None:
        self._f.close()
        if self.size != size or self._digest.hexdigest() != sha256:
            raise IntegrityCheckError(
                f"the file {name!r} in the backup does not match its recorded hash; the backup is damaged. "
                "Nothing was restored."
            )

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()


class Staging:
    """Staging folders (one per root) and the all-or-nothing move of staged files into place."""

    def __init__(self) -> None:
        self._dirs: dict[Path, Path] = {}
        self._count = 0
        self.files: list[StagedFile] = []
        self._moved: list[tuple[Path, Path | None]] = []  # (final, set-aside old file or None)
        self._created_dirs: list[Path] = []

    def _dir_for(self, root: Path) -> Path:
        if root not in self._dirs:
            root.parent.mkdir(parents=True, exist_ok=True)
            d = root.parent / f".dbs-restore-{root.name}-{secrets.token_hex(6)}"
            d.mkdir(mode=0o700)
            leftovers.claim(d)  # a process killed half-way leaves it to the next sweep on this host
            (d / "old").mkdir()
            self._dirs[root] = d
        return self._dirs[root]

    def new_file(self, root: Path, final: Path) -> StagedFile:
        self._count += 1
        staged = StagedFile(self._dir_for(root) / f"{self._count:09d}", final)
        self.files.append(staged)
        return staged

    def _dir_of(self, final: Path) -> Path:
        for root, d in self._dirs.items():
            if final.is_relative_to(root):
                return d
        raise AssertionError("staged file outside its root")

    def _aside(self, final: Path, n: int) -> Path:
        return self._dir_of(final) / "old" / f"{n:09d}"

    def committed(self) -> None:
        """The database committed: the moves are final, and a sweep after a crash must not undo them."""
        for d in self._dirs.values():
            leftovers.mark_committed(d)

    def _make_parents(self, path: Path) -> None:
        missing = []
        p = path.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            self._created_dirs.append(d)

    def apply(self) -> None:
        """Move every staged file to its final place, setting aside what it replaces.

        Every move is journalled (durably, one fsync per staging folder) before the first one is made, so a
        crash at any point can be undone: the undo skips what never moved (no file set aside, no new file in
        place). One fsync per file cost a third of a second per 300 media files.
        """
        plan: list[tuple[StagedFile, Path | None]] = []
        journal: dict[Path, list[tuple[Path, Path | None]]] = {}
        for staged in self.files:
            final = staged.final
            self._make_parents(final)
            old = self._aside(final, len(self._moved) + len(plan)) if final.exists() or final.is_symlink() else None
            plan.append((staged, old))
            journal.setdefault(self._dir_of(final), []).append((final, old))
        for folder, moves in journal.items():
            leftovers.journal_moves(folder, moves)  # before any move: a crash can undo them
        for staged, old in plan:
            final = staged.final
            if old is not None:
                os.replace(final, old)
            self._moved.append((final, old))
            os.replace(staged.path, final)

    def rollback(self) -> None:
        """Undo :meth:`apply`: put the old files back, remove new ones and the folders made for them."""
        for final, old in reversed(self._moved):
            try:
                if old is not None:
                    os.replace(old, final)
                else:
                    final.unlink(missing_ok=True)
            except OSError:
                pass
        self._moved.clear()
        for d in reversed(self._created_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        self._created_dirs.clear()

    @staticmethod
    def sweep_orphans(roots) -> list[Path]:
        """Remove the staging folders beside ``roots`` that a dead restore on this host left behind."""
        removed = []
        for root in roots:
            removed += leftovers.sweep(Path(root).parent, f".dbs-restore-{Path(root).name}-*")
        return removed

    def cleanup(self) -> None:
        for staged in self.files:
            staged.abort()
        for d in self._dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        self._dirs.clear()
