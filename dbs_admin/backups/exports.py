"""Export a repository snapshot to a standalone sealed file, with progress and cancel (the download's export job).

Why a service of its own: the console's Download of a snapshot runs in a worker (a multi-GB repository
outlasts any proxy's timeout), so the export must report how far it is and stop when asked, which
``repository.export_snapshot`` (the command's and the drill's, which run where nobody watches a bar) does not.
The file is sealed as the key that opened the repository: its passphrase, or to the identity that opened it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbs_admin.backups.errors import BackupError, CancelledError
from dbs_admin.backups.sealing_keys import argon2_params
from dbs_admin.sealed.repo import Repository
from dbs_admin.sealed.repo.export import SnapshotReader

EXPORTING = "exporting"  # stage: the snapshot read, sealed and written (bytes of the payload read)
VERIFYING = "verifying the export"  # stage: the sealed file read back once whole (the writer's own check)

Progress = Callable[[str, int, "int | None"], None]


class _Watched:
    """The snapshot's payload as the writer reads it, reporting the bytes read and stopping when cancelled."""

    def __init__(self, reader: SnapshotReader, total: int, progress: Progress | None,
                 cancel: Callable[[], bool] | None) -> None:
        self._reader, self._total, self._progress, self._cancel = reader, total, progress, cancel
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        if self._cancel is not None and self._cancel():
            raise CancelledError("The export was cancelled; nothing was kept.")
        piece = self._reader.read(n)
        self.done += len(piece)
        if self._progress is not None:
            if piece:
                self._progress(EXPORTING, self.done, max(self._total, self.done))
            else:  # the payload is all read (the stage ends where it is); the writer now reads the file back
                self._progress(EXPORTING, self.done, self.done)
                self._progress(VERIFYING, 0, None)
        return piece


def export_for_download(target: Any, name: str, destination: Path, *, passphrase: str | None = None,
                        identity: Any = None, progress: Progress | None = None,
                        cancel: Callable[[], bool] | None = None) -> Any:
    """Seal snapshot ``name`` of repository ``target`` into ``destination`` (a SealReport).

    A wrong key is refused before anything is written (``Repository.open``); the file appears only whole and
    verified (the writer's atomic publication).
    """
    from dbs_admin.sealed import seal

    repo = Repository.open(target.store, passphrase=passphrase, identity=identity)
    if name not in repo.snapshot_names():
        raise BackupError(f"target {target.name!r} holds no snapshot named {name!r}; see manage.py dbs_list")
    info = repo.snapshot(name)
    total = info.plaintext_size  # every stream: the payload's share once the file list is read (an estimate)
    params, allow_weak = argon2_params()
    keys = {"recipients": [identity.recipient]} if identity is not None else {"passphrase": passphrase}
    with SnapshotReader(repo, name) as reader:
        return seal(_Watched(reader, total, progress, cancel), destination, manifest=reader.manifest,
                    file_sha256=True, argon2=params, allow_weak_argon2=allow_weak, **keys)
