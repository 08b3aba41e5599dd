"""Who is using a repository: shared locks for backups, an exclusive one for garbage collection.

Why locks at all when backups are lock-free among themselves: a backup
deduplicates against chunks it finds in the index, and garbage collection
deletes chunks no snapshot refers to; the two must not overlap, or a new
snapshot could refer to a chunk just deleted. A lock is an object
``locks/<shared|exclusive>-<time>-<random>`` (plain JSON: host, pid, time).
Taking one publishes it, then lists the others: a backup backs off if an
exclusive lock exists, collection backs off if any other lock exists (if both
arrive at once both back off, never both proceed). Locks older than
``STALE_AFTER`` are ignored (a killed process cannot block for ever).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.repo.store import ObjectStore

LOCK_PREFIX = "locks/"
STALE_AFTER = 6 * 3600


class RepositoryBusyError(SealedError):
    """Another process holds a lock that conflicts with the one asked for; try again later."""


def _live(store: ObjectStore, mine: str) -> list[str]:
    now = time.time()
    out = []
    for name in store.list(LOCK_PREFIX):
        if name == mine:
            continue
        try:
            stamp = int(name[len(LOCK_PREFIX):].split("-")[1])
        except (IndexError, ValueError):
            continue
        if now - stamp < STALE_AFTER:
            out.append(name[len(LOCK_PREFIX):])
    return out


@contextmanager
def lock(store: ObjectStore, *, exclusive: bool, wait: float = 0.0) -> Iterator[None]:
    """Hold a lock for the block; RepositoryBusyError if a conflicting one stays for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        name = f"{LOCK_PREFIX}{'exclusive' if exclusive else 'shared'}-{int(time.time())}-{secrets.token_hex(6)}"
        with tempfile.TemporaryDirectory(dir=store.staging_dir()) as tmp:
            path = Path(tmp) / "lock"
            path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}))
            store.put_atomic(name, path)
        others = _live(store, name)
        conflicts = others if exclusive else [o for o in others if o.startswith("exclusive-")]
        if not conflicts:
            break
        store.delete(name)
        if time.monotonic() >= deadline:
            what = "garbage collection" if not exclusive else "another backup or collection"
            raise RepositoryBusyError(f"the repository is in use by {what} ({conflicts[0]}); try again later")
        time.sleep(0.5 + secrets.randbelow(500) / 1000)
    try:
        yield
    finally:
        store.delete(name)
