"""Forgetting snapshots, and collecting the garbage they leave: reference-counted and two-phase.

``forget(store, name)`` deletes a snapshot record (no key needed; it never
damages another snapshot, since snapshots share chunks only by reference).
``collect_garbage(repo)`` then reclaims space, under the exclusive lock (no
backup runs meanwhile), in an order that keeps every remaining snapshot
readable at every instant, so a collection killed at any point loses nothing:

1. mark: every chunk id reachable from every snapshot record (data and list
   chunks) is live;
2. repack: live chunks of packs that are mostly dead are copied into new
   packs; then one new index object listing every live chunk is published;
3. sweep: only now are the old index objects deleted, then the packs that
   hold no live chunk, or whose live chunks were copied.

A snapshot record that appears between 1 and 3 cannot exist (the lock keeps
backups out); one forgotten meanwhile only means more is kept this time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from dbs_admin.sealed.repo.locks import lock
from dbs_admin.sealed.repo.objects import SealedObject
from dbs_admin.sealed.repo.packs import PACK_PREFIX, ChunkOpener, Entry, PackWriter
from dbs_admin.sealed.repo.records import INDEX_PREFIX, SNAPSHOT_PREFIX, encode_index, write_record
from dbs_admin.sealed.repo.repository import Repository
from dbs_admin.sealed.repo.store import ObjectStore

REPACK_BELOW = 0.5  # a pack whose live bytes are under this share of its chunks is rewritten


@dataclass
class GcReport:
    live_chunks: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    bytes_freed: int = 0


def forget(store: ObjectStore, name: str) -> None:
    """Delete a snapshot's record (its chunks go at the next ``collect_garbage``)."""
    store.delete(SNAPSHOT_PREFIX + name)


def _live_ids(repo: Repository) -> set[bytes]:
    live: set[bytes] = set()
    for snap in repo.snapshots():
        for root, depth, _size in snap.streams.values():
            ids = [root] if root is not None else []
            live.update(ids)
            for _ in range(depth):
                data = b"".join(repo.read_chunks(ids))
                ids = [data[i : i + 32] for i in range(0, len(data), 32)]
                live.update(ids)
    return live


def collect_garbage(repo: Repository, *, wait: float = 0.0) -> GcReport:
    """Reclaim what no snapshot refers to (see the module docstring)."""
    store = repo.store
    report = GcReport()
    with lock(store, exclusive=True, wait=wait):
        repo._index = None
        index = repo.index
        live = _live_ids(repo)
        report.live_chunks = len(live)
        by_pack: dict[str, list[tuple[bytes, Entry]]] = {}
        for cid, entry in index.items():
            by_pack.setdefault(entry.pack, []).append((cid, entry))
        keep: dict[bytes, Entry] = {}
        doomed: list[str] = []
        packer = PackWriter(store, repo.rkey.key, repo.rkey.repository_id, prefix="gc-" + secrets.token_hex(4) + ".",
                            dictionary=repo.current_dictionary())
        for pack in store.list(PACK_PREFIX):
            entries = by_pack.get(pack, [])
            live_entries = [(c, e) for c, e in entries if c in live]
            total = sum(e.length for _, e in entries) or 1
            live_bytes = sum(e.length for _, e in live_entries)
            if not live_entries:
                doomed.append(pack)
            elif live_bytes / total < REPACK_BELOW:
                with SealedObject(store, pack, kind="pack", **repo._kw()) as obj:
                    opener = ChunkOpener(obj, repo.dictionary)
                    for cid, entry in live_entries:
                        if not packer.holds(cid):
                            packer.add(cid, opener.open(cid, entry))
                doomed.append(pack)
                report.packs_repacked += 1
            else:
                keep.update(live_entries)
        packer.flush()
        keep.update(packer.written)
        old_indexes = store.list(INDEX_PREFIX)
        write_record(store, INDEX_PREFIX + "gc-" + secrets.token_hex(16), "index", encode_index(keep), **repo._kw())
        for name in old_indexes:
            store.delete(name)
        for pack in doomed:
            report.bytes_freed += store.size(pack)
            store.delete(pack)
            report.packs_deleted += 1
        repo._index = None
    return report
