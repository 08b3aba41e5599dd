"""Reed-Solomon parity through Intel's ISA-L (``libisal.so.2``), when the system has it.

Why: the parity is the largest single cost of sealing (numpy's table gathers
reach ~0.4 GB/s a core; ``bench/sealed.py``). ISA-L is the well-kept library
for exactly this arithmetic: ``ec_encode_data`` computes any GF(256) linear
code given its coefficient matrix, with SIMD kernels chosen for the CPU at run
time (~3.5x faster here). Our parity is linear in the message bytes, so its
matrix (``rs.parity_matrix``) goes in as is and the output is byte-identical to the
numpy encoder and to reedsolo (``tests/sealed/test_rs.py`` holds all three
to it). The interleaved layout already matches ISA-L's: message position
``p`` of every codeword of a piece is the contiguous run ``piece[p*n:(p+1)*n]``
and parity byte ``i`` is stored as the run ``parity[i*n:(i+1)*n]``, so blocks
are encoded in place, without reshuffling.

Optional by design: it is a system library (Debian/Ubuntu ``libisal2``), not
a wheel, and the container core must work without it. ``DBS_RS_ENGINE``
chooses: ``auto`` (default: ISA-L when found), ``numpy``, or ``isal`` (an
error if it cannot be loaded). ctypes releases the GIL during the call, so the
writer's parity threads run side by side.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

import numpy as np

from dbs_admin.sealed.rs_params import NSYM, K, codewords_for

ENGINE_VARIABLE = "DBS_RS_ENGINE"
_NAMES = ("libisal.so.2", "isal")


class IsalUnavailable(RuntimeError):
    """``DBS_RS_ENGINE=isal`` was asked for and the library cannot be loaded."""


def _load() -> ctypes.CDLL | None:
    for name in _NAMES:
        path = name if name.startswith("lib") else ctypes.util.find_library(name)
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.ec_encode_data  # noqa: B018 - the symbol must be there
            lib.ec_init_tables  # noqa: B018
        except (OSError, AttributeError):
            continue
        lib.ec_init_tables.restype = None
        lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.ec_encode_data.restype = None
        lib.ec_encode_data.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_void_p]
        return lib
    return None


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    choice = os.environ.get(ENGINE_VARIABLE, "auto").strip().lower() or "auto"
    if choice == "numpy":
        return None
    lib = _load()
    if lib is None and choice == "isal":
        raise IsalUnavailable(f"{ENGINE_VARIABLE}=isal, but libisal.so.2 cannot be loaded "
                              "(apt-get install libisal2)")
    return lib


def available() -> bool:
    """Whether parity goes through ISA-L in this process."""
    return _library() is not None


_expanded: dict[bytes, np.ndarray] = {}


def _expanded_tables(matrix: np.ndarray) -> np.ndarray:
    """ISA-L's expanded form (32 bytes per coefficient) of the parity matrix, made once per process.

    ``matrix[i, p]`` (NSYM x K) is the coefficient of message position ``p`` in
    parity byte ``i``; ``rs`` owns the code and passes it in.
    """
    key = matrix.tobytes()
    tables = _expanded.get(key)
    if tables is None:
        rows = np.ascontiguousarray(matrix, dtype=np.uint8)
        tables = np.zeros(32 * K * NSYM, dtype=np.uint8)
        _library().ec_init_tables(K, NSYM, rows.ctypes.data, tables.ctypes.data)
        _expanded[key] = tables
    return tables


def pieces_parity(buf: bytes | bytearray | memoryview, count: int, matrix: np.ndarray) -> list[bytes]:
    """Parity of ``count`` equal-length pieces laid end to end in ``buf``; the same bytes as ``rs.pieces_parity``.

    ``matrix``: the code's parity matrix, NSYM x K (``rs.parity_matrix()``).

    Every address is computed up front in two numpy operations, so the loop is
    one foreign call per piece (the per-piece Python work was a third of the time).
    """
    encode = _library().ec_encode_data
    flat = np.frombuffer(buf, dtype=np.uint8)
    length = len(flat) // count
    n = codewords_for(length)
    tables = _expanded_tables(matrix).ctypes.data
    full_rows, rest = divmod(length, n)  # positions wholly inside each piece; then ``rest`` real bytes
    virtual = K - full_rows  # the partial position and any all-zero ones after it, padded per piece
    tails = np.zeros((count, virtual * n), dtype=np.uint8)
    if virtual and rest:
        tails[:, :rest] = flat[: count * length].reshape(count, length)[:, full_rows * n :]
    out = np.empty((count, NSYM * n), dtype=np.uint8)
    piece = np.arange(count, dtype=np.uint64)[:, None]
    sources = np.empty((count, K), dtype=np.uint64)
    sources[:, :full_rows] = (np.uint64(flat.ctypes.data) + piece * np.uint64(length)
                              + np.arange(full_rows, dtype=np.uint64) * np.uint64(n))
    sources[:, full_rows:] = (np.uint64(tails.ctypes.data) + piece * np.uint64(virtual * n)
                              + np.arange(virtual, dtype=np.uint64) * np.uint64(n))
    outputs = (np.uint64(out.ctypes.data) + piece * np.uint64(NSYM * n)
               + np.arange(NSYM, dtype=np.uint64) * np.uint64(n))
    source_at, output_at = sources.ctypes.data, outputs.ctypes.data
    for b in range(count):
        encode(n, K, NSYM, tables, source_at + b * K * 8, output_at + b * NSYM * 8)
    return [row.tobytes() for row in out]
