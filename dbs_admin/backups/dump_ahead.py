"""Read a dump tool's pipe on a thread of its own, from the moment the tool starts, into a bounded queue.

Why: a native backup of a server database is ``mariadb-dump``'s (or ``pg_dump``'s) output and the media files,
and the tool is the backup's critical path (the floor it is measured against is the tool alone). Read on the
capturing thread, the tool stalled on its 64 KiB pipe whenever that thread did something else: counting rows,
listing the media and reading the migrations inside the snapshot before the first byte was taken, then hashing
and framing each piece. Read here, the tool runs from the instant its snapshot opens. When the queue is full the
thread stops reading and the tool blocks on its pipe, exactly as it does when the sealing is slower than the
dump: memory stays bounded by ``AHEAD_PIECES``.

(An earlier try also sealed the media first while this thread read the dump; measured, it gained nothing, since
the sealing already kept both cores busy then. The order stays dump first; only the set-up overlaps now.)

The dump's own iterator (its process, its error on a failed exit) runs entirely on this thread: its failure is
raised where the payload reaches the dump, and a payload abandoned early closes it here (which kills the tool).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

AHEAD_PIECES = 16  # the tools' pipes are read 1 MiB at a time: at most ~16 MiB of dump waits in memory
_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class DumpAhead:
    """Iterate over ``chunks`` (started on a thread at once) from any later point, as if it had been read there."""

    def __init__(self, chunks: Iterable[bytes], pieces: int = AHEAD_PIECES):
        self._chunks = iter(chunks)
        self._queue: queue.Queue = queue.Queue(pieces)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="dbs-dump-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless the reader has gone; False when it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _drain(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    break
            else:
                self._put(_END)
                return
        except BaseException as exc:  # noqa: BLE001 - raised on the reading side, where the payload reaches it
            self._put(_Failed(exc))
            return
        close = getattr(self._chunks, "close", None)
        if close is not None:  # abandoned: the dump's generator stops (and kills) its tool
            close()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def __enter__(self) -> DumpAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, wait: float = 10.0) -> None:
        """Stop reading (the thread closes the dump's iterator) and wait for the thread, at most ``wait`` s.

        A thread still blocked on a silent tool after that is left (a daemon): the dump's owner kills the tool
        when its snapshot ends, which ends the read.
        """
        self._stop.set()
        while True:  # make room, so a put in progress returns and sees the stop
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(wait)
