"""A target that is a folder on this machine (or a mounted share).

Files are private (0600 in a 0700 folder) because a sealed backup, even
encrypted, tells an attacker what to attack. A file appears under its name
only once copied, fsynced and re-read with the expected size and hash, so a
crash or a full disk never leaves something that looks like a complete
backup; its ``.sha256`` sidecar is written after it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dbs_admin.targets.base import (
    CHUNK,
    DIR_MODE,
    FILE_MODE,
    Progress,
    StoredFile,
    check_name,
    fsync_dir,
    hash_stream,
    is_listed_name,
    parse_sidecar,
    publish_no_replace,
    receive_file,
    sidecar_name,
    sidecar_text,
    temp_path,
)
from dbs_admin.targets.errors import BackupExistsError, StoredFileMissingError, TargetError


class LocalTarget:
    """Sealed files in one folder; see the module docstring."""

    kind = "local"

    def __init__(self, name: str, path: str | os.PathLike[str], shared: bool = False) -> None:
        self.name = name
        self.path = Path(path).expanduser()
        self.shared = bool(shared)  # every host mounts it (backups.host_disks); else it is this host's own disk

    def __repr__(self) -> str:
        return f"<LocalTarget {self.name!r} {self.path}>"

    def _folder(self, create: bool = False) -> Path:
        """The folder, made private (0700) when we create it or own it: backups are nobody else's business."""
        if create:
            try:
                self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                st = self.path.stat()
                if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != DIR_MODE:
                    os.chmod(self.path, DIR_MODE)
            except OSError as exc:
                raise TargetError(f"target {self.name!r}: cannot create folder {self.path}: {exc.strerror}") from exc
        return self.path

    def _file(self, name: str) -> Path:
        return self.path / check_name(name)

    def put(self, local_path: Path, name: str, *, progress: Progress | None = None) -> StoredFile:
        final = self._file(name)
        folder = self._folder(create=True)
        if final.exists() or final.is_symlink():
            raise BackupExistsError(f"{final} already exists on target {self.name!r}; backups are never overwritten")
        source = Path(local_path)
        try:
            src = open(source, "rb")
        except OSError as exc:
            raise TargetError(f"cannot read {source}: {exc.strerror}") from exc
        tmp = temp_path(folder, name)
        try:
            with src:
                expected_size = os.fstat(src.fileno()).st_size
                size, sha256 = self._copy(src, tmp, expected_size, progress)
            if size != expected_size:
                raise TargetError(
                    f"{source} changed while it was copied ({size} bytes read, {expected_size} expected); "
                    "nothing was stored — run the backup again"
                )
            self._verify(tmp, size, sha256)
            publish_no_replace(tmp, final)
            fsync_dir(folder)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._write_sidecar(final.name, sha256)
        return self._stored(final, sha256)

    def adopt(self, local_path: Path, name: str, sha256: str) -> StoredFile:
        """Take in a file this process has just written, synced and verified, without copying it.

        Why: a backup to a local target used to be written twice more (copied
        in, re-read) after the sealer had already written and verified it.
        On the same filesystem the sealed file is hard-linked under its final
        name (``link`` never replaces an existing name) and the caller then
        drops its own name; ``sha256`` must be the hash the sealer computed on
        its read-back. Across filesystems this is an ordinary :meth:`put`.
        """
        final = self._file(name)
        folder = self._folder(create=True)
        source = Path(local_path)
        try:
            os.link(source, final)
        except FileExistsError:
            raise BackupExistsError(
                f"{final} already exists on target {self.name!r}; backups are never overwritten"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise TargetError(f"target {self.name!r}: cannot store {name}: {exc.strerror}") from exc
            return self._put_expecting(source, name, sha256)  # another filesystem, or no hard links
        try:
            os.chmod(final, FILE_MODE)
            fsync_dir(folder)
            self._write_sidecar(final.name, sha256)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return self._stored(final, sha256)

    def _put_expecting(self, source: Path, name: str, sha256: str) -> StoredFile:
        stored = self.put(source, name)
        if stored.sha256 != sha256:
            self.delete(name)
            raise TargetError(f"target {self.name!r}: {name} changed on its way in; run the backup again")
        return stored

    def _copy(self, src: BinaryIO, tmp: Path, total: int, progress: Progress | None) -> tuple[int, str]:
        digest = hashlib.sha256()
        done = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            while block := src.read(CHUNK):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        return done, digest.hexdigest()

    def _verify(self, tmp: Path, size: int, sha256: str) -> None:
        """Re-read what landed on disk: a bad disk or a full filesystem must not pass as a backup."""
        with open(tmp, "rb") as f:
            got_size, got_sha = hash_stream(f)
        if (got_size, got_sha) != (size, sha256):
            raise TargetError(
                f"target {self.name!r}: the copy in {self.path} does not match its source "
                f"(size {got_size}/{size}, sha256 {got_sha[:12]}/{sha256[:12]}); nothing was stored"
            )

    def _write_sidecar(self, name: str, sha256: str) -> None:
        final = self.path / sidecar_name(name)
        tmp = temp_path(self.path, sidecar_name(name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                out.write(sidecar_text(name, sha256))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)  # a stale sidecar of a deleted file may be replaced
            fsync_dir(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _read_sidecar(self, name: str) -> str | None:
        try:
            return parse_sidecar((self.path / sidecar_name(name)).read_bytes()[:256])
        except OSError:
            return None

    def _stored(self, path: Path, sha256: str | None) -> StoredFile:
        st = path.stat()
        return StoredFile(
            name=path.name,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            sha256=sha256,
        )

    def list(self) -> list[StoredFile]:
        if not self.path.is_dir():
            return []
        files = []
        try:
            entries = list(os.scandir(self.path))
        except OSError as exc:
            raise TargetError(f"target {self.name!r}: cannot list {self.path}: {exc.strerror}") from exc
        for entry in entries:
            if is_listed_name(entry.name) and entry.is_file(follow_symlinks=False):
                files.append(self._stored(Path(entry.path), self._read_sidecar(entry.name)))
        return sorted(files, key=lambda f: (f.created_at, f.name), reverse=True)

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._file(name), "rb")
        except FileNotFoundError:
            raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}") from None

    def open_ranged(self, name: str) -> BinaryIO:
        """The file itself: seekable, and nothing is fetched that is not read."""
        return self.open(name)

    def fetch(self, name: str, local_path: Path) -> Path:
        with self.open(name) as src:
            expected = self._read_sidecar(name)
            receive_file(src, Path(local_path), expected_sha256=expected, what=f"{name} on target {self.name!r}")
        return Path(local_path)

    def verify(self, name: str) -> StoredFile:
        """Re-read the stored file and check it against its sidecar; TargetError when they differ."""
        try:
            with self.open(name) as f:
                size, sha256 = hash_stream(f)
        except OSError as exc:
            raise TargetError(f"target {self.name!r}: cannot read {name}: {exc.strerror}") from exc
        expected = self._read_sidecar(name)
        if expected is None:
            raise TargetError(f"target {self.name!r}: {name} has no readable .sha256 sidecar to verify against")
        if expected != sha256:
            raise TargetError(
                f"target {self.name!r}: {name} does not match its recorded sha256 (stored {sha256[:12]}…, "
                f"expected {expected[:12]}…); that copy is damaged — use another copy, or try `dbs_validate` to heal it"
            )
        return self._stored(self._file(name), sha256)

    def delete(self, name: str) -> None:
        path = self._file(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}") from None
        (self.path / sidecar_name(name)).unlink(missing_ok=True)
        fsync_dir(self.path)

    def exists(self, name: str) -> bool:
        return self._file(name).is_file()

    def local_path(self, name: str) -> Path | None:
        return self._file(name)
