"""The payload's zstd stream: one frame, with no effort spent on data that does not shrink.

Why: a backup carries media (PNG, JPEG, WebP, zip...) that is already
compressed. zstd at level 3 spends as long searching those bytes for matches
as it does on the database dump, to win a few per cent: on the reference site
(74 MB of dump, 24 MB of PNG) that search is most of the compression time and
sits on the backup's critical path after the dump. So every large piece of
the stream is tried first: a 16 KiB sample of it at level 1 (microseconds).
A sample that does not shrink by ``INCOMPRESSIBLE`` sends the piece through
at level 1 (zstd's fastest search, which still stores any block that does
not shrink as a raw block); the others go at the caller's level.

The bytes on disk do not change kind: the output is still ONE ordinary zstd
frame that any reader decompresses (docs/FORMAT.md section 6). zstd allows
the level to change inside a frame only with its worker threads (a new level
applies from the next job, ``ZSTD_c_compressionLevel`` in zstd.h), through
``ZSTD_CCtx_setParameter``, which python-zstandard's C extension does not
expose; its cffi backend binds the same libzstd functions, so they are called
through it. Without that backend, or with no worker threads, the whole stream
goes at the caller's level, as before: only slower, never different in kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import zstandard

# zstd's own worker threads. At level 3, compressing is the slowest step of a seal while the second core idles.
# Jobs of 2 MiB keep their buffers to ~20 MiB (zstd's default, 8 MiB at this level, costs ~85 MiB) at the same
# ratio. The output is one ordinary zstd frame either way.
JOB_SIZE = 2 << 20
FAST_LEVEL = 1
TRIAL_MIN = 32 << 10  # smaller pieces (frame headers, JSON records) never change the level
TRIAL_SIZE = 16 << 10
INCOMPRESSIBLE = 0.97  # a sample at level 1 keeping this share of its size or more is not worth searching
_OUT_SIZE = 1 << 20

try:  # the same libzstd, bound through cffi (python-zstandard ships both backends; cffi comes with argon2-cffi)
    from zstandard.backend_cffi import ffi as _ffi
    from zstandard.backend_cffi import lib as _lib
except ImportError:  # pragma: no cover - a build of python-zstandard without its cffi backend
    _ffi = _lib = None


def levels_switchable(threads: int) -> bool:
    """Whether a stream with ``threads`` workers can change its level between jobs (else: one level)."""
    return threads > 0 and _lib is not None


class _Trial:
    """Does a piece look incompressible? One level-1 compression of a sample from its middle."""

    def __init__(self) -> None:
        self._zstd = zstandard.ZstdCompressor(level=FAST_LEVEL, write_content_size=False)

    def incompressible(self, piece) -> bool:
        n = len(piece)
        start = (n - TRIAL_SIZE) // 2 if n > TRIAL_SIZE else 0
        sample = memoryview(piece)[start:start + TRIAL_SIZE]
        return len(self._zstd.compress(sample)) >= INCOMPRESSIBLE * len(sample)


class LevelledStream:
    """A zstd frame written with libzstd's streaming API, level chosen per piece (see the module docstring).

    ``compress(piece)`` returns what the frame has ready (possibly b""), ``finish()`` the rest. ``levels``
    counts the bytes fed at each level, so a caller (and the tests) can see which path the data took.
    """

    def __init__(self, level: int, threads: int) -> None:
        if not levels_switchable(threads):
            raise ValueError("a levelled stream needs zstd worker threads and python-zstandard's cffi backend")
        self._level = level
        self._current = level
        self.levels: dict[int, int] = {}
        self._trial = _Trial()
        cctx = _lib.ZSTD_createCCtx()
        if cctx == _ffi.NULL:
            raise MemoryError("zstd could not allocate a compression context")
        self._cctx = _ffi.gc(cctx, _lib.ZSTD_freeCCtx)
        for param, value in ((_lib.ZSTD_c_compressionLevel, level), (_lib.ZSTD_c_nbWorkers, threads),
                             (_lib.ZSTD_c_jobSize, JOB_SIZE), (_lib.ZSTD_c_checksumFlag, 0)):
            self._check(_lib.ZSTD_CCtx_setParameter(self._cctx, param, value))
        self._out = _ffi.new("char[]", _OUT_SIZE)
        self._in_buf = _ffi.new("ZSTD_inBuffer *")
        self._out_buf = _ffi.new("ZSTD_outBuffer *")

    @staticmethod
    def _check(code: int) -> int:
        if _lib.ZSTD_isError(code):
            raise zstandard.ZstdError(_ffi.string(_lib.ZSTD_getErrorName(code)).decode())
        return code

    def _set_level(self, level: int) -> None:
        if level != self._current:
            self._check(_lib.ZSTD_CCtx_setParameter(self._cctx, _lib.ZSTD_c_compressionLevel, level))
            self._current = level

    def _drive(self, data, mode: int) -> bytes:
        """Feed ``data`` (all of it) in ``mode``; for ZSTD_e_end, until the frame is complete."""
        src = _ffi.from_buffer(data)
        in_buf, out_buf = self._in_buf, self._out_buf
        in_buf.src, in_buf.size, in_buf.pos = src, len(data), 0
        out = []
        while True:
            out_buf.dst, out_buf.size, out_buf.pos = self._out, _OUT_SIZE, 0
            left = self._check(_lib.ZSTD_compressStream2(self._cctx, out_buf, in_buf, mode))
            if out_buf.pos:
                out.append(_ffi.buffer(self._out, out_buf.pos)[:])
            if in_buf.pos == in_buf.size and (mode != _lib.ZSTD_e_end or left == 0):
                break
        return out[0] if len(out) == 1 else b"".join(out)

    def compress(self, piece) -> bytes:
        if len(piece) >= TRIAL_MIN:
            self._set_level(FAST_LEVEL if self._trial.incompressible(piece) else self._level)
        self.levels[self._current] = self.levels.get(self._current, 0) + len(piece)
        return self._drive(piece, _lib.ZSTD_e_continue)

    def finish(self) -> bytes:
        return self._drive(b"", _lib.ZSTD_e_end)


def _fixed(level: int, threads: int):
    if threads <= 0:
        return zstandard.ZstdCompressor(level=level).compressobj()
    params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, job_size=JOB_SIZE)
    return zstandard.ZstdCompressor(compression_params=params).compressobj()


def compressed(pieces: Iterable[bytes], level: int, counter: list[int], threads: int = 0) -> Iterator[bytes]:
    """``pieces`` as one zstd frame, counting output bytes into ``counter[0]``; incompressible pieces at level 1
    when zstd can switch (``threads`` > 0 and the cffi backend present), else all at ``level``."""
    if levels_switchable(threads) and level > FAST_LEVEL:
        stream = LevelledStream(level, threads)
        feed, end = stream.compress, stream.finish
    else:
        cobj = _fixed(level, threads)
        feed, end = cobj.compress, cobj.flush
    for piece in pieces:
        out = feed(piece)
        if out:
            counter[0] += len(out)
            yield out
    out = end()
    counter[0] += len(out)
    yield out


__all__ = ["compressed", "LevelledStream", "levels_switchable", "JOB_SIZE", "FAST_LEVEL"]
