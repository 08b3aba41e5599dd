"""Where a repository backup's and restore's time goes: each stage timed alone (used by ``bench/repository.py``).

Why stage by stage rather than a profile of the timed run: a profiler's overhead is per call, so it inflates the
per-row Python stages against the C ones (hashing, SQLite), and a restore reads on a second thread a profile
does not see. Here each stage runs alone, in a forked child like the timed runs, over what the stage before
gave (kept in memory), with the code the real run uses; in CPU seconds:

backup (run just before the timed backup, so what is new is still new; nothing is committed):
  open       the repository opened (the key kept in memory, as a worker has it) and its chunk index loaded
  rows       every carried model's rows read through the capture's query alone (``logical_capture._rows``)
  capture    the whole payload stream (rows read, encoded, MessagePack; media looked up in the files cache)
  chunk      the payload split into one-row frames and cut into chunks (``backups.repository.payload_chunks``)
  ids        every chunk's keyed BLAKE2b id
  lookup     the ids looked up in the index (a batch at a time, as the writer does)
  pack       the new chunks compressed, encrypted and sealed into packs (into a scratch store: not published)
  other      the timed backup's CPU time minus the stages above (counts and manifest, the snapshot's id
             lists, index object and record, the files cache; ``capture`` includes ``rows``)
restore:
  read       the snapshot opened and read as the restore reads it (every chunk decrypted, decompressed, its id
             checked; rows merged into batches; frames parsed), rows not decoded
  insert     the same restore fed from the payload in memory (rows decoded and inserted, files written)
The timed restore runs ``read`` on a second thread while the main one inserts, so it takes about the larger
of the two plus what they contend for (one interpreter lock, two cores).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

clock = time.process_time  # CPU seconds: each stage is one thread's work, and CPU time holds steadier than wall
# time on a shared host (the timed runs report both)


def backup_stages(passphrase: str) -> dict:
    from dbs_admin.backups import files_cache, logical_capture
    from dbs_admin.backups import repository as repo_backup
    from dbs_admin.backups.progress import Reporter
    from dbs_admin.backups.selection import backed_up_models
    from dbs_admin.backups.sources import target
    from dbs_admin.conf import dbs_settings
    from dbs_admin.sealed.repo import DirectoryStore, Repository
    from dbs_admin.sealed.repo.packs import PackWriter

    t: dict[str, float] = {}
    started = clock()
    repo = Repository.open(target("repo").store, passphrase=passphrase)
    index = repo.index
    index.contains_many([bytes(32)])  # builds the sorted columns, as the writer's first lookup does
    t["open"] = clock() - started
    started = clock()
    with logical_capture.snapshot("default"):
        for model in backed_up_models():
            as_text = frozenset(logical_capture.sqlite_datetime_encoders(model, "default"))
            for _rows in logical_capture._rows(model, "default", int(dbs_settings.BATCH_SIZE), as_text):
                pass
    t["rows"] = clock() - started
    cache = files_cache.FilesCache(files_cache.cache_path(dbs_settings.PRIVATE_ROOT, repo.rkey.repository_id),
                                   repo.rkey.key, index.__contains__)
    started = clock()
    with logical_capture.snapshot("default"), files_cache.activated(cache):
        pieces = list(logical_capture.stream("default", head={"format": 1, "kind": "logical"},
                                             reporter=Reporter(None, None)))
    t["capture"] = clock() - started
    started = clock()
    chunks = [c for c in repo_backup.payload_chunks(pieces, []) if isinstance(c, (bytes, bytearray))]
    t["chunk"] = clock() - started
    started = clock()
    ids = [repo.chunk_id(c) for c in chunks]
    t["ids"] = clock() - started
    started = clock()
    known = []
    for i in range(0, len(ids), repo_backup.ID_BATCH):
        known += index.contains_many(ids[i : i + repo_backup.ID_BATCH])
    t["lookup"] = clock() - started
    new = [(cid, c) for cid, c, k in zip(ids, chunks, known) if not k]
    with tempfile.TemporaryDirectory() as scratch:
        started = clock()
        packer = PackWriter(DirectoryStore(Path(scratch)), repo.rkey.key, repo.rkey.repository_id,
                            dictionary=repo.current_dictionary())
        for cid, c in dict(new).items():
            packer.add(cid, c)
        packer.flush()
        t["pack"] = clock() - started
    return {"stages": t, "chunks": len(chunks), "new_chunks": len(new), "new_bytes": sum(len(c) for _, c in new)}


def restore_stages(name: str, passphrase: str, media: str, scratch: str) -> dict:
    from django.conf import settings

    from dbs_admin.backups import payload
    from dbs_admin.backups import repository as repo_backup
    from dbs_admin.backups.logical_restore import Selection
    from dbs_admin.backups.progress import Reporter
    from dbs_admin.backups.restore import _restore
    from dbs_admin.backups.sources import target

    t: dict[str, float] = {}
    started = clock()
    with repo_backup.open_snapshot(target("repo"), name, passphrase=passphrase) as reader:
        for _frame in payload.read_frames(reader):
            pass
    t["read"] = clock() - started
    with repo_backup.open_snapshot(target("repo"), name, passphrase=passphrase) as reader:
        data, summary = reader.read(), reader.manifest
    stream = io.BytesIO(data)
    stream.healed_blocks = []
    settings.MEDIA_ROOT = media
    started = clock()
    _restore(stream, summary, "logical", scratch, Selection.parse([], []), False, Reporter(None, None), clock())
    t["insert"] = clock() - started
    return {"stages": t}


def describe(stages: dict, total: float | None = None) -> str:
    """``open 0.05, rows 0.20, ...`` (and ``other``, the wall time not in a stage, when ``total`` is given)."""
    t = dict(stages["stages"])
    if total is not None:
        t["other"] = total - sum(v for k, v in t.items() if k != "rows")
    out = ", ".join(f"{k} {v:.2f}" for k, v in t.items())
    if "chunks" in stages:
        out += f" ({stages['chunks']:,d} chunks, {stages['new_chunks']:,d} new, {stages['new_bytes']:,d} bytes)"
    return out
