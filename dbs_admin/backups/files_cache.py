"""The files cache of repository backups: media files that did not change are not read again.

Why: a site's media is mostly the same from one night to the next, and
reading (and hashing, and chunking) every file only to find chunks the
repository already holds is most of an unchanged backup's cost. A file whose
``(size, mtime_ns, ctime_ns, inode, device)`` equal what was recorded when
the previous snapshot read it is taken as unchanged: its chunk ids and its
SHA-256 come from the cache, and the file is not opened at all.

Rules (docs/FORMAT.md part 2, "files cache"):

* ctime is part of the fingerprint: a file rewritten with the same size whose
  mtime is then set back (``touch -d``, ``os.utime``, an rsync that keeps
  times) still has a new ctime, which no user call can set back; a file
  replaced by another (rename over it) has a new inode.
* racily clean files are not recorded: a file modified less than
  ``RACY_NS`` before it was looked at (2 s on file systems with whole-second
  times) could change again within the same timestamp, so it is read again
  next time.
* a file is recorded only if its stat after it was read equals the stat
  before (it did not change while read).
* an entry is trusted only if every one of its chunk ids is in the
  repository's index (a collection may have removed them since): otherwise
  the file is read.
* the cache holds the entries of the last snapshot only (files gone from the
  site drop out), is keyed by repository id, lives under ``PRIVATE_ROOT``,
  and is sealed with AES-256-GCM under a key derived from the repository
  key: file names, sizes and ids are not readable without the key. A cache
  that is missing, from another repository, damaged or unreadable is simply
  empty (everything is read, and it is written anew).

The capture asks :func:`reusable` before opening a file; when a cache is
active (only inside a repository backup) and the file is unchanged, it
yields :func:`reused_frames` instead of the file's bytes: the FILE frame, a
:class:`Reused` marker carrying the ids, and the END_DATA frame.
"""

from __future__ import annotations

import contextvars
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dbs_admin.backups import payload
from dbs_admin.sealed.aead import derive_subkey

CACHE_LABEL = b"dbs1/repo-files-cache"
MAGIC = b"DBSFC1\n"
RACY_NS = 100_000_000  # 0.1 s: coarser than the kernel's timestamp tick (jiffies)
RACY_COARSE_NS = 2_000_000_000  # file systems with whole-second (FAT: 2 s) times
ID_SIZE = 32

_active: contextvars.ContextVar[FilesCache | None] = contextvars.ContextVar("dbs_files_cache", default=None)


@dataclass(frozen=True)
class Reused:
    """In a payload stream in place of a file's DATA frames: what the cache knows of the unchanged file."""

    ids: bytes  # the file's chunk ids, concatenated
    size: int
    sha256: str

    def id_list(self) -> list[bytes]:
        return [self.ids[i : i + ID_SIZE] for i in range(0, len(self.ids), ID_SIZE)]


def _fingerprint(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class FilesCache:
    """One repository's cache, loaded for one snapshot; ``save`` keeps the entries that snapshot used."""

    def __init__(self, path: Path, repository_key: bytes, known: Callable[[bytes], bool]):
        self.path = path
        self._aead = AESGCM(derive_subkey(repository_key, CACHE_LABEL))
        self._known = known
        self.entries: dict[str, list] = self._load()
        self.kept: dict[str, list] = {}
        self._pending: dict[str, tuple[Path, list[int], int]] = {}
        self.hits = self.misses = 0

    def _load(self) -> dict[str, list]:
        try:
            data = self.path.read_bytes()
            if not data.startswith(MAGIC):
                return {}
            nonce, sealed = data[len(MAGIC) : len(MAGIC) + 12], data[len(MAGIC) + 12 :]
            doc = msgpack.unpackb(self._aead.decrypt(nonce, sealed, MAGIC), raw=False)
            entries = doc["entries"] if doc.get("format") == 1 else {}
            return entries if isinstance(entries, dict) else {}
        except (OSError, InvalidTag, ValueError, KeyError, TypeError, msgpack.UnpackException):
            return {}  # missing, foreign or damaged: everything is read again, and the cache written anew

    def lookup(self, root_id: str, name: str, path: Path) -> Reused | None:
        key = f"{root_id}\0{name}"
        try:
            st = os.stat(path)
        except OSError:
            return None
        fp = _fingerprint(st)
        entry = self.entries.get(key)
        if entry is not None:
            try:
                old_fp, sha256, ids = entry
                if list(old_fp) == fp and len(ids) % ID_SIZE == 0 and all(
                        self._known(ids[i : i + ID_SIZE]) for i in range(0, len(ids), ID_SIZE)):
                    self.kept[key] = entry
                    self.hits += 1
                    return Reused(bytes(ids), fp[0], str(sha256))
            except (TypeError, ValueError):
                pass
        self.misses += 1
        self._pending[key] = (path, fp, time.time_ns())
        return None

    def record(self, root_id: str, name: str, ids: list[bytes], size: int, sha256: str) -> None:
        """A file just read for the snapshot: remember it, unless it changed meanwhile or is racily clean."""
        key = f"{root_id}\0{name}"
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        path, fp, looked_at = pending
        try:
            after = _fingerprint(os.stat(path))
        except OSError:
            return
        if after != fp or fp[0] != size:
            return
        coarse = fp[1] % 1_000_000_000 == 0 and fp[2] % 1_000_000_000 == 0
        if max(fp[1], fp[2]) > looked_at - (RACY_COARSE_NS if coarse else RACY_NS):
            return
        self.kept[key] = [fp, sha256, b"".join(ids)]

    def save(self) -> None:
        """Write the entries of this snapshot, sealed, atomically (a failure only costs the next backup reads)."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, msgpack.packb({"format": 1, "entries": self.kept}), MAGIC)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + nonce + sealed)
            os.replace(tmp, self.path)
        except OSError:
            pass


def cache_path(private_root: str | os.PathLike[str], repository_id: bytes) -> Path:
    return Path(private_root) / "repo-cache" / f"{repository_id.hex()}.files"


@contextmanager
def activated(cache: FilesCache | None) -> Iterator[FilesCache | None]:
    """Within the block, the captures of this context consult ``cache`` (see :func:`reusable`)."""
    token = _active.set(cache)
    try:
        yield cache
    finally:
        _active.reset(token)


def reusable(root_id: str, name: str, path: Path | None) -> Reused | None:
    """The cached record of an unchanged local file when a repository backup is running, else None (read it)."""
    cache = _active.get()
    if cache is None or path is None:
        return None
    return cache.lookup(root_id, name, path)


def reused_frames(header: dict[str, Any], hit: Reused) -> Iterator[Any]:
    """What the capture yields for an unchanged file: FILE, the marker in place of its bytes, END_DATA."""
    yield payload.json_frame(payload.FILE, header)
    yield hit
    yield payload.json_frame(payload.END_DATA, {"size": hit.size, "sha256": hit.sha256})
