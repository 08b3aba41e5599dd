"""Overlap the database work with the sealed container's work, on two threads.

Why: a backup is two pipelines in series, reading rows (Python, ORM, the
database) and sealing (zstd, AES-GCM, Reed-Solomon, two writes, a verify),
and each takes about as long as the other. The container is pure Python with
no Django, so it can run on a second thread while the calling thread keeps
its database connection and its snapshot transaction (Django connections
belong to a thread). A small bounded queue between them keeps memory flat.
Restores do the same the other way round: decrypting and framing on a second
thread, inserting on the caller's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from dbs_admin.backups import payload
from dbs_admin.sealed import seal

QUEUE_ITEMS = 8
_END = object()


class _Raise:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the other side has stopped; False when it has."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def seal_in_background(pieces: Iterable[bytes], destination, **seal_options: Any):
    """``seal(pieces, destination, ...)`` with ``pieces`` produced on this thread and sealed on another.

    An exception on either side stops both; the sealed writer then removes its
    temporary file, so nothing is published.
    """
    q: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def source() -> Iterator[bytes]:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raise):
                raise item.exc
            yield item

    def run() -> None:
        try:
            outcome["report"] = seal(source(), destination, **seal_options)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=run, name="dbs-seal", daemon=True)
    worker.start()
    try:
        for piece in pieces:
            if not _put(q, piece, done):
                break
        else:
            _put(q, _END, done)
    except BaseException as exc:
        _put(q, _Raise(exc), done)
        worker.join()
        raise
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["report"]


def frames_in_background(stream: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """``payload.read_frames(stream)``, decrypted and framed on a second thread."""
    q: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
    stop = threading.Event()

    def run() -> None:
        try:
            for frame in payload.read_frames(stream):
                if not _put(q, frame, stop):
                    return
            _put(q, _END, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            _put(q, _Raise(exc), stop)

    worker = threading.Thread(target=run, name="dbs-read", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raise):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
