"""Atomic creation of output files: temporary name, fsync, rename, fsync of the directory.

Why: a crash (or an exception) half way through a backup or a decryption
must never leave a file under the final name that looks complete. Outputs
are written to ``<dest>.tmp-<random>`` in the same directory and appear
under their real name only once complete, flushed and checked.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from dbs_admin.sealed.errors import DestinationExistsError, UsageError


def write_all(f: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Write every byte (a raw file's ``write`` may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]


def fsync_directory(path: Path, *, best_effort: bool = True) -> None:
    """Make a rename or unlink in ``path`` durable.

    ``best_effort`` (the container's choice, for portability to systems
    without directory fsync) ignores errors; the targets and the history
    store pass False, so a folder that cannot be synced fails the operation.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not best_effort:
            raise
    finally:
        os.close(fd)


class EarlyWriteback:
    """Flush a file being written in the background, every ``every`` bytes, so the final fsync finds little left.

    Why: a sealed file is written at CPU speed, but the kernel starts writing
    it to disk only when dirty pages pile up or at the final ``fsync``, which
    then stalls for the whole file (0.25 s per 600 MB here, far longer on
    slow disks). An ``fdatasync`` on a helper thread now and then overlaps
    that I/O with the compression and encryption still running.

    An error of a background flush is kept and raised by :meth:`close`: on
    Linux a write-back error is reported once per open file, so the final
    ``fsync`` on the same descriptor might not see it again.
    """

    def __init__(self, fd: int, every: int = 64 << 20):
        self.fd = fd
        self.every = every
        self._since = 0
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def wrote(self, n: int) -> None:
        self._since += n
        if self._since < self.every or (self._thread is not None and self._thread.is_alive()):
            return
        self._since = 0
        self._thread = threading.Thread(target=self._flush, name="dbs-writeback", daemon=True)
        self._thread.start()

    def _flush(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            self._error = exc

    def close(self) -> None:
        """Wait for the flush in progress (the descriptor must outlive it); raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _check_during_fsync(fd: int, check: Callable[[Path], None], tmp: Path) -> None:
    """``os.fsync(fd)`` on a helper thread while ``check(tmp)`` runs here; either one's error is raised."""
    failed: list[OSError] = []

    def flush() -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            failed.append(exc)

    flusher = threading.Thread(target=flush, name="dbs-fsync", daemon=True)
    flusher.start()
    try:
        check(tmp)
    finally:
        flusher.join()
    if failed:
        raise failed[0]


@contextmanager
def atomic_output(
    destination: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    check: Callable[[Path], None] | None = None,
    check_while_syncing: bool = False,
) -> Iterator[BinaryIO]:
    """Yield a file to write; on clean exit fsync it, run ``check(tmp_path)``, then publish it.

    ``check_while_syncing`` runs the check during the fsync instead of after
    it (the fsync on a helper thread): the read-back sees the same bytes
    either way (the page cache's, before and after the flush), the file is
    published only once both succeeded, and the flush of a fresh file (the
    second copy of a sealed file, written last) no longer adds its time to
    the check's.

    With ``overwrite=False`` an existing destination is refused before any
    work, and publishing uses ``link`` (which fails if the name appeared in
    the meantime) instead of ``rename`` (which would replace it).
    On any exception the temporary file is removed and nothing is published.
    """
    dest = Path(destination)
    if dest.is_dir():
        raise UsageError(f"{dest} is a directory; give a file name for the output")
    if not overwrite and (dest.exists() or dest.is_symlink()):
        raise DestinationExistsError(f"{dest} already exists; refusing to overwrite it (pass overwrite=True / --force)")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"directory {parent} does not exist")
    tmp = parent / f"{dest.name}.tmp-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w+b", buffering=0) as f:
            yield f
            if check is not None and check_while_syncing:
                _check_during_fsync(f.fileno(), check, tmp)
            else:
                os.fsync(f.fileno())
                if check is not None:
                    check(tmp)
        if overwrite:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise DestinationExistsError(f"{dest} appeared while writing; refusing to overwrite it") from None
            except OSError:
                if dest.exists():
                    raise
                os.rename(tmp, dest)  # file systems without hard links
        fsync_directory(parent)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
