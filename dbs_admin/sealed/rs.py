"""Reed-Solomon parity over GF(256), byte-identical to ``reedsolo.RSCodec(NSYM)``.

Why our own encoder: reedsolo's pure-Python encoder runs at ~1 MB/s, which
would make parity the bottleneck of every backup. The code is linear, so the
parity of a message is the XOR of the parities of its bytes taken one at a
time. For each message position ``p`` we precompute a 256-row table of "the
parity of a message that is zero except value ``v`` at ``p``" and then encode
thousands of codewords at once with one numpy gather + XOR per position.

Decoding is only ever needed for data that failed its hash. It uses
reedsolo's algebra (Forney syndromes, Berlekamp-Massey, Forney magnitudes)
with the two costly loops done in numpy: syndromes (the same table trick, so
clean codewords are screened out at numpy speed) and the Chien search. The
tests hold it to reedsolo's own decoder, result for result.

Interleaving ("pieces"): a piece of ``L`` bytes is protected by
``n = ceil(L / K)`` codewords; byte ``j`` belongs to codeword ``j % n`` at
message position ``j // n`` (positions past ``L`` are virtual zeros, never
stored). Parity byte ``i`` of codeword ``c`` is stored at ``i * n + c``. So
a contiguous burst of ``b`` bytes costs each codeword at most ``ceil(b / n)``
symbols: a zeroed 4 KiB page inside a 64 KiB block is 14 errors per codeword,
within the 16 that NSYM = 32 corrects blind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import reedsolo

from dbs_admin.sealed import rs_isal
from dbs_admin.sealed.rs_params import FCR, GENERATOR, NSYM, PRIM, K, N, codewords_for, parity_size

__all__ = [
    "PRIM",
    "GENERATOR",
    "FCR",
    "N",
    "NSYM",
    "K",
    "codewords_for",
    "parity_size",
    "piece_parity",
    "pieces_parity",
    "encode_parity",
    "syndromes",
    "decode_many",
    "RepairResult",
    "repair_piece",
]

@lru_cache(maxsize=1)
def _gf() -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(512, dtype=np.int64)
    log = np.zeros(256, dtype=np.int64)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= PRIM
    exp[255:510] = exp[:255]
    return exp, log


def _gf_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    exp, log = _gf()
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    product = exp[(log[a] + log[b]) % 255]
    return np.where((a == 0) | (b == 0), 0, product).astype(np.uint8)


@lru_cache(maxsize=1)
def _mul_table() -> np.ndarray:
    """The full GF(256) multiplication table, ``M[a, b] = a * b`` (64 KiB)."""
    values = np.arange(256)
    return _gf_mul(values[:, None], values[None, :])


@lru_cache(maxsize=1)
def _tables() -> np.ndarray:
    """``T[p, v]`` = parity (NSYM bytes, viewed as NSYM/8 uint64) of ``v`` at position ``p``.

    Position ``p`` of a K-byte message is the coefficient of ``x^(K-1-p)``;
    after the systematic shift its parity is ``v * (x^(NSYM+K-1-p) mod g)``,
    with ``g = prod_{i<NSYM} (x - 2^(i+FCR))`` as in reedsolo.
    """
    exp, _ = _gf()
    gen = np.array([1], dtype=np.uint8)
    for i in range(NSYM):
        root = np.uint8(exp[i + FCR])
        nxt = np.zeros(len(gen) + 1, dtype=np.uint8)
        nxt[:-1] ^= gen
        nxt[1:] ^= _gf_mul(gen, root)
        gen = nxt
    tail = gen[1:]  # x^NSYM mod g (g is monic, and minus is XOR)
    remainders = np.zeros((K, NSYM), dtype=np.uint8)  # remainders[e] = x^(NSYM+e) mod g
    cur = tail.copy()
    for e in range(K):
        remainders[e] = cur
        lead = cur[0]
        cur = np.concatenate([cur[1:], np.zeros(1, dtype=np.uint8)])
        if lead:
            cur ^= _gf_mul(tail, lead)
    table = _mul_table()[:, remainders[::-1]]  # (256, K, NSYM): position p uses x^(NSYM+K-1-p)
    return np.ascontiguousarray(table.transpose(1, 0, 2)).view(np.uint64)  # (K, 256, NSYM // 8)


@lru_cache(maxsize=1)
def parity_matrix() -> np.ndarray:
    """The code as a matrix, ``A[i, p]`` = coefficient of message position ``p`` in parity byte ``i`` (NSYM x K).

    It is the parity of the value 1 at each position; ISA-L (``rs_isal``) encodes with it directly.
    """
    return np.ascontiguousarray(_tables().view(np.uint8).reshape(K, 256, NSYM)[:, 1, :].T)


_local = threading.local()


def _workspace(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread (index, accumulator, scratch) buffers for ``m`` codewords, reused across calls.

    Why: allocating ~16 MiB of fresh index memory per batch costs more in page
    faults than the encoding itself on small VMs.
    """
    spaces = getattr(_local, "spaces", None)
    if spaces is None:
        spaces = _local.spaces = {}
    cached = spaces.get(m)
    if cached is None:
        if len(spaces) >= 4:
            spaces.pop(next(iter(spaces)))
        cached = spaces[m] = (np.empty((K, m), dtype=np.intp), np.empty((m, NSYM // 8), dtype=np.uint64),
                              np.empty((m, NSYM // 8), dtype=np.uint64))
    return cached


def _byte_workspace(m: int) -> np.ndarray:
    """A per-thread (K, m) uint8 buffer for the interleaved messages of a batch, reused across calls."""
    cached = getattr(_local, "bytes", None)
    if cached is None or cached.shape[1] != m:
        cached = _local.bytes = np.empty((K, m), dtype=np.uint8)
    return cached


def _encode_index(index: np.ndarray) -> np.ndarray:
    """Parity for message bytes (intp, or uint8 as they are), shape (k, m); returns (NSYM, m) uint8 (a copy)."""
    k, m = index.shape
    table = _tables()[K - k :]
    _, acc, tmp = _workspace(m)
    acc.fill(0)
    for p in range(k):
        np.take(table[p], index[p], axis=0, out=tmp, mode="clip")
        np.bitwise_xor(acc, tmp, out=acc)
    return acc.view(np.uint8).reshape(m, NSYM).T.copy()


def encode_parity(messages: np.ndarray) -> np.ndarray:
    """Parity of many codewords at once.

    ``messages`` has shape ``(k, m)``: column ``c`` is the message of codeword
    ``c`` (``k <= K`` bytes; shorter messages are reedsolo's shortened
    codewords). Returns shape ``(NSYM, m)``: column ``c`` is its parity.
    """
    k, m = messages.shape
    if k > K:
        raise ValueError(f"a message holds at most {K} bytes, got {k}")
    index = _workspace(m)[0][:k]
    np.copyto(index, messages, casting="unsafe")
    return _encode_index(index)


def pieces_parity(buf: bytes | bytearray | memoryview, count: int) -> list[bytes]:
    """Parity of ``count`` equal-length pieces laid end to end in ``buf``.

    Through ISA-L when the system has it (``rs_isal``: same bytes, ~3.5x faster), else one numpy pass.
    """
    if count == 0 or len(buf) == 0:
        return [b""] * count
    if rs_isal.available():
        return rs_isal.pieces_parity(buf, count, parity_matrix())
    return numpy_pieces_parity(buf, count)


def numpy_pieces_parity(buf: bytes | bytearray | memoryview, count: int) -> list[bytes]:
    """``pieces_parity`` with numpy alone (the reference the ISA-L path is held to)."""
    if count == 0 or len(buf) == 0:
        return [b""] * count
    flat = np.frombuffer(buf, dtype=np.uint8)
    length = len(flat) // count
    flat = flat.reshape(count, length)
    n = codewords_for(length)
    # Bytes stay bytes: np.take widens each row as it gathers, cheaper than widening the whole batch up front.
    index = _byte_workspace(count * n)
    cube = index.reshape(K, count, n)  # cube[p, b, c] = byte p*n + c of piece b
    full_rows, rest = divmod(length, n)
    cube[:full_rows] = flat[:, : full_rows * n].reshape(count, full_rows, n).transpose(1, 0, 2)
    if full_rows < K:
        cube[full_rows, :, :rest] = flat[:, full_rows * n :]
        cube[full_rows, :, rest:] = 0
        cube[full_rows + 1 :] = 0
    parity = _encode_index(index).reshape(NSYM, count, n)
    return [parity[:, b, :].tobytes() for b in range(count)]


def piece_parity(piece: bytes | bytearray | memoryview) -> bytes:
    """Interleaved parity of one piece (see the module docstring for the layout)."""
    return pieces_parity(piece, 1)[0]


# --- Repair ---------------------------------------------------------------------------------------


@dataclass
class RepairResult:
    """What repairing one piece found: the data (None if it could not be healed) and effort spent."""

    data: bytes | None
    codewords_decoded: int = 0
    symbols_corrected: int = 0


_CODEC: reedsolo.RSCodec | None = None
_DECODE_ERRORS = (reedsolo.ReedSolomonError, ValueError, IndexError, ZeroDivisionError)


def _codec() -> reedsolo.RSCodec:
    global _CODEC
    if _CODEC is None:
        _CODEC = reedsolo.RSCodec(NSYM, nsize=N, fcr=FCR, prim=PRIM, generator=GENERATOR)
    # reedsolo's functions read module-level field tables; make sure they are ours
    codec = _CODEC
    reedsolo.gf_log, reedsolo.gf_exp, reedsolo.field_charac = codec.gf_log, codec.gf_exp, codec.field_charac
    return _CODEC


@lru_cache(maxsize=1)
def _syndrome_tables() -> np.ndarray:
    """``S[j, v]`` = the syndromes contributed by value ``v`` at codeword position ``j``.

    As reedsolo: syndrome ``i`` is the codeword polynomial (first byte = highest
    degree) evaluated at ``GENERATOR^(i+FCR)``; linear, so tables apply as for parity.
    """
    exp, _ = _gf()
    i = np.arange(NSYM)
    j = np.arange(N)
    powers = exp[((i[None, :] + FCR) * (N - 1 - j[:, None])) % 255]  # (N, NSYM)
    table = _mul_table()[:, powers]  # (256, N, NSYM)
    return np.ascontiguousarray(table.transpose(1, 0, 2)).view(np.uint64)


def syndromes(codewords: np.ndarray) -> np.ndarray:
    """Syndromes of many full N-byte codewords (columns of an (N, m) array) -> (NSYM, m); all 0 = valid."""
    table = _syndrome_tables()
    m = codewords.shape[1]
    index = np.ascontiguousarray(codewords, dtype=np.intp)
    acc = np.zeros((m, NSYM // 8), dtype=np.uint64)
    tmp = np.empty_like(acc)
    for p in range(N):
        np.take(table[p], index[p], axis=0, out=tmp, mode="clip")
        np.bitwise_xor(acc, tmp, out=acc)
    return acc.view(np.uint8).reshape(m, NSYM).T


def _chien(poly: list[int]) -> list[int] | None:
    """Error positions: roots of the locator ``poly`` (highest degree first) among GENERATOR^i, i < N.

    The vectorised equivalent of ``reedsolo.rs_find_errors``; None when the
    number of roots differs from the degree (too many errors).
    """
    exp, log = _gf()
    coeffs = np.array(poly, dtype=np.int64)
    degree = len(coeffs) - 1
    nonzero = np.flatnonzero(coeffs)
    i = np.arange(N, dtype=np.int64)[:, None]
    step = i * int(log[GENERATOR]) * (degree - nonzero)[None, :]  # log of x^(degree-k) at x = GENERATOR^i
    terms = exp[(log[coeffs[nonzero]][None, :] + step) % 255]
    roots = np.flatnonzero(np.bitwise_xor.reduce(terms, axis=1) == 0)
    if len(roots) != degree:
        return None
    return [N - 1 - int(r) for r in roots]


def _decode_one(codeword: np.ndarray, synd: np.ndarray, erasures: list[int]) -> np.ndarray | None:
    """reedsolo's errors-and-erasures decoder, with syndromes and Chien search done in numpy."""
    _codec()
    full = [0] + [int(x) for x in synd]  # reedsolo's shifted syndrome convention
    try:
        fsynd = reedsolo.rs_forney_syndromes(full, erasures, N, GENERATOR)
        locator = reedsolo.rs_find_error_locator(fsynd, NSYM, erase_count=len(erasures))
        errors = _chien(list(locator[::-1]))
        if errors is None:
            return None
        received = bytearray(codeword.tobytes())
        fixed = reedsolo.rs_correct_errata(received, full, erasures + errors, FCR, GENERATOR)
    except _DECODE_ERRORS:
        return None
    return np.frombuffer(bytes(fixed), dtype=np.uint8)


def decode_many(codewords: np.ndarray, erasures: list[list[int]]) -> list[np.ndarray | None]:
    """Correct many full N-byte codewords (columns), each with its erasure positions.

    Returns the corrected codeword or None for each; a result is returned only
    if its syndromes are all zero afterwards (it *is* a codeword; whether it is
    the right one is for the caller's hash to say).
    """
    work = codewords.copy()
    for c, erased in enumerate(erasures):
        if len(erased) > NSYM:
            erasures[c] = None  # type: ignore[call-overload]
        elif erased:
            work[erased, c] = 0  # as reedsolo: erased values do not matter
    synd = syndromes(work)
    results: list[np.ndarray | None] = []
    for c, erased in enumerate(erasures):
        if erased is None:
            results.append(None)
        elif not synd[:, c].any():
            results.append(work[:, c].copy())
        else:
            results.append(_decode_one(work[:, c], synd[:, c], list(erased)))
    fixed = [c for c, r in enumerate(results) if r is not None]
    if fixed:
        check = syndromes(np.stack([results[c] for c in fixed], axis=1))
        for col, c in enumerate(fixed):
            if check[:, col].any():
                results[c] = None
    return results


def _decode(codeword: np.ndarray, erasures: list[int]) -> np.ndarray | None:
    """Correct one full N-byte codeword; None when it cannot be corrected."""
    return decode_many(codeword.reshape(N, 1), [list(erasures)])[0]


def repair_piece(
    length: int,
    copies: list[tuple[bytes, bytes, np.ndarray | None] | None],
) -> RepairResult:
    """Heal a piece of ``length`` bytes from one or more damaged stored copies.

    Each copy is ``(data, parity, missing)`` where ``missing`` is a boolean
    mask over the ``length + parity_size(length)`` stored bytes that were
    unreadable (past end of file), or None. Per codeword:

    1. take the first copy whose codeword is consistent (parity recomputes);
    2. else decode each copy alone (unreadable bytes as erasures);
    3. else, with two copies, mark every position where they disagree (plus
       unreadable ones) as an erasure: erasures cost half an unknown error, so
       this heals damage up to NSYM symbols per codeword spread over both copies;
    4. else, with two copies, where they disagree and one of them is 0x00 (a
       zeroed sector) take the other, and erase only the ambiguous positions:
       this heals non-overlapping zeroed runs far beyond NSYM per codeword.

    The caller MUST check the result against the piece's hash: a codeword
    can in principle be "corrected" into the wrong one.
    """
    n = codewords_for(length)
    psize = NSYM * n
    words = []  # per copy: (N, n) codeword matrix, (N, n) missing mask, (n,) consistent flags
    for copy in copies:
        if copy is None:
            continue
        data, parity, missing = copy
        if len(data) != length or len(parity) != psize:
            raise ValueError("copy does not have the piece's length")
        msg = np.zeros(K * n, dtype=np.uint8)
        msg[:length] = np.frombuffer(data, dtype=np.uint8)
        msg = msg.reshape(K, n)
        par = np.frombuffer(parity, dtype=np.uint8).reshape(NSYM, n)
        cw = np.concatenate([msg, par], axis=0)  # (N, n)
        mask = np.zeros((N, n), dtype=bool)
        if missing is not None:
            mflat = np.zeros(K * n, dtype=bool)
            mflat[:length] = missing[:length]
            mask[:K] = mflat.reshape(K, n)
            mask[K:] = missing[length:].reshape(NSYM, n)
        consistent = np.all(encode_parity(msg) == par, axis=0) & ~mask.any(axis=0)
        words.append((cw, mask, consistent))
    if not words:
        return RepairResult(None)
    result = np.zeros((N, n), dtype=np.uint8)
    todo = np.ones(n, dtype=bool)
    for cw, _, consistent in words:
        take = todo & consistent
        result[:, take] = cw[:, take]
        todo &= ~take
    decoded = corrected = 0

    def attempt(base: np.ndarray, erased: list[list[int]], cols: np.ndarray) -> None:
        nonlocal decoded, corrected
        fixed = decode_many(base[:, cols], erased)
        decoded += len(cols)
        for c, f in zip(cols, fixed):
            if f is not None:
                corrected += int(np.count_nonzero(f != codeword_of[c]))
                result[:, c] = f
                todo[c] = False

    for cw, mask, _ in words:
        cols = np.flatnonzero(todo)
        if len(cols):
            codeword_of = {c: cw[:, c] for c in cols}
            attempt(cw, [[int(i) for i in np.flatnonzero(mask[:, c])] for c in cols], cols)
    if todo.any() and len(words) >= 2:
        (cw_a, mask_a, _), (cw_b, mask_b, _) = words[0], words[1]
        cols = np.flatnonzero(todo)
        differ = (cw_a[:, cols] != cw_b[:, cols]) | mask_a[:, cols] | mask_b[:, cols]
        base = np.where(mask_a, cw_b, cw_a)
        codeword_of = {c: base[:, c] for c in cols}
        attempt(base, [[int(i) for i in np.flatnonzero(differ[:, k])] for k in range(len(cols))], cols)
    if todo.any() and len(words) >= 2:
        # Zeroed sectors are the commonest damage: where the copies disagree and
        # exactly one of them is 0x00, believe the other; erase only the
        # ambiguous positions. Wrong guesses are ordinary errors for RS, and the
        # caller's hash check has the last word.
        cols = np.flatnonzero(todo)
        a, b = cw_a[:, cols], cw_b[:, cols]
        missing_a, missing_b = mask_a[:, cols], mask_b[:, cols]
        a_zeroed = ((a == 0) & (b != 0)) | missing_a
        base = np.where(a_zeroed, b, a)
        ambiguous = (a != b) & ~a_zeroed & ~((b == 0) & (a != 0)) & ~missing_b | (missing_a & missing_b)
        full = np.zeros((N, n), dtype=np.uint8)
        full[:, cols] = base
        codeword_of = {c: full[:, c] for c in cols}
        attempt(full, [[int(i) for i in np.flatnonzero(ambiguous[:, k])] for k in range(len(cols))], cols)
    if todo.any():
        return RepairResult(None, decoded, corrected)
    data = result[:K].reshape(-1)[:length].tobytes()
    return RepairResult(data, decoded, corrected)
