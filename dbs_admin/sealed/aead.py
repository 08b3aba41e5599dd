"""Chunked AES-256-GCM payload encryption (the STREAM construction of age and Tink).

The payload is cut into chunks of ``chunk_size`` plaintext bytes (the last
one may be shorter, and an empty payload is one empty chunk). Chunk ``i`` is
sealed with

* key   = ``derive_subkey(data_key, b"dbs payload")`` (HKDF-SHA256),
* nonce = 11-byte big-endian ``i`` || ``0x01`` if it is the last chunk else ``0x00``,
* associated data = the 32-byte digest of the container header,

so moving, dropping, duplicating or appending chunks, cutting the stream at
a chunk boundary, editing the header, or splicing in chunks from another
file all fail authentication. Each ciphertext chunk is the GCM ciphertext
followed by its 16-byte tag.

Trust model for consumers: ``ChunkDecryptor.decrypt_stream`` yields each
chunk's plaintext only after *that chunk* authenticated, but the stream as a
whole is only known to be complete when the final chunk authenticated, that
is when the generator finishes without raising. Until then a consumer must
treat what it received as untrusted (stage it, never apply it): a truncated
or tampered stream raises AuthenticationError part way through.

Memory use is constant: at most about two chunks are held, whatever the
stream length. This module imports nothing from Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbs_admin.sealed.errors import AuthenticationError, UsageError

__all__ = [
    "PLAINTEXT_CHUNK_SIZE",
    "TAG_SIZE",
    "HEADER_DIGEST_SIZE",
    "PAYLOAD_PURPOSE",
    "MAX_CHUNK_SIZE",
    "derive_subkey",
    "ciphertext_size",
    "ChunkEncryptor",
    "ChunkDecryptor",
]

PLAINTEXT_CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
HEADER_DIGEST_SIZE = 32
PAYLOAD_PURPOSE = b"dbs payload"
# A chunk is held in memory whole; a hostile header must not ask for more than this.
MAX_CHUNK_SIZE = 1 << 26
_COUNTER_SIZE = 11
MAX_CHUNKS = 1 << (8 * _COUNTER_SIZE)
_DATA_KEY_SIZE = 32

Buffer = bytes | bytearray | memoryview


def derive_subkey(data_key: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, derived from the file's data key.

    HKDF-SHA256 with no salt and ``info = purpose``. Keys for different
    purposes (payload, manifest, ...) are independent, so the same nonce
    scheme can be reused for each without ever repeating a (key, nonce) pair.
    """
    if not isinstance(data_key, (bytes, bytearray)) or len(data_key) != _DATA_KEY_SIZE:
        raise UsageError(f"the data key must be {_DATA_KEY_SIZE} bytes")
    if not isinstance(purpose, bytes) or not purpose:
        raise UsageError("the subkey purpose must be non-empty bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(bytes(data_key))


def _check_chunk_size(chunk_size: int) -> int:
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or not 1 <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise UsageError(f"chunk size must be an integer from 1 to {MAX_CHUNK_SIZE}, got {chunk_size!r}")
    return chunk_size


def ciphertext_size(plaintext_size: int, chunk_size: int = PLAINTEXT_CHUNK_SIZE) -> int:
    """Exact ciphertext length for a payload of ``plaintext_size`` bytes (one tag per chunk)."""
    _check_chunk_size(chunk_size)
    chunks = max(1, -(-plaintext_size // chunk_size))
    return plaintext_size + chunks * TAG_SIZE


def _nonce(index: int, final: bool) -> bytes:
    if not isinstance(index, int) or not 0 <= index < MAX_CHUNKS:
        raise UsageError(f"chunk index {index!r} is outside the 88-bit counter range")
    return index.to_bytes(_COUNTER_SIZE, "big") + (b"\x01" if final else b"\x00")


def _rechunk(pieces: Iterable[Buffer], size: int) -> Iterator[tuple[Buffer, bool]]:
    """Regroup arbitrary pieces into ``size``-byte chunks, flagging the last one.

    Yields ``(chunk, is_last)``; every chunk but the last is exactly ``size``
    bytes, the last one 0..size bytes (0 only when the input is empty). A
    yielded view is valid only until the generator is resumed, which suits
    the encrypt/decrypt loops that consume it at once. Pieces of type
    ``bytes`` are sliced without copying; other buffers may be reused by the
    caller, so whatever must outlive the current piece is copied into an own
    buffer (at most one chunk per piece).
    """
    buf = bytearray(size)
    view = memoryview(buf)
    fill = 0
    held: Buffer | None = None  # a complete chunk not yet known to be (or not be) the last
    held_in_buf = False
    for piece in pieces:
        mv = memoryview(piece)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        n = len(mv)
        if not n:
            continue
        if held is not None:
            yield held, False
            held = None
            if held_in_buf:
                fill = 0
                held_in_buf = False
        pos = 0
        if fill:
            take = min(size - fill, n)
            view[fill : fill + take] = mv[:take]
            fill += take
            pos = take
            if fill < size:
                continue
            if pos < n:
                yield view, False
                fill = 0
            else:
                held, held_in_buf = view, True
                continue
        while n - pos > size:
            yield mv[pos : pos + size], False
            pos += size
        rest = n - pos
        if rest == size and type(piece) is bytes:
            held = mv[pos:]
        else:
            view[:rest] = mv[pos:]
            if rest == size:
                held, held_in_buf = view, True
            else:
                fill = rest
    if held is not None:
        yield held, True
    else:
        yield view[:fill], True


class _ChunkCipher:
    def __init__(self, data_key: bytes, header_digest: bytes, chunk_size: int):
        if not isinstance(header_digest, (bytes, bytearray)) or len(header_digest) != HEADER_DIGEST_SIZE:
            raise UsageError(f"the header digest must be {HEADER_DIGEST_SIZE} bytes")
        self._aead = AESGCM(derive_subkey(data_key, PAYLOAD_PURPOSE))
        self._ad = bytes(header_digest)
        self.chunk_size = _check_chunk_size(chunk_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chunk_size={self.chunk_size})"


class ChunkEncryptor(_ChunkCipher):
    """Encrypts one file's payload. Use one instance per file (fresh data key)."""

    def __init__(self, data_key: bytes, header_digest: bytes, chunk_size: int = PLAINTEXT_CHUNK_SIZE):
        super().__init__(data_key, header_digest, chunk_size)

    def encrypt_chunk(self, index: int, plaintext: Buffer, final: bool) -> bytes:
        """Seal chunk ``index``: a non-final chunk must be exactly ``chunk_size`` bytes."""
        size = memoryview(plaintext).nbytes
        if size > self.chunk_size or (not final and size != self.chunk_size):
            raise UsageError(
                f"a {'final' if final else 'non-final'} chunk cannot hold {size} bytes "
                f"(chunk size {self.chunk_size})"
            )
        return self._aead.encrypt(_nonce(index, final), plaintext, self._ad)

    def encrypt_stream(self, plaintext_chunks: Iterable[Buffer]) -> Iterator[bytes]:
        """Encrypt pieces of any sizes; yield one ciphertext chunk (plaintext + 16-byte tag) at a time.

        An empty input yields exactly one final chunk (just a tag), so a
        reader can tell an empty payload from a truncated one.
        """
        encrypt, ad = self._aead.encrypt, self._ad
        index = 0
        for chunk, last in _rechunk(plaintext_chunks, self.chunk_size):
            yield encrypt(_nonce(index, last), chunk, ad)
            index += 1


class ChunkDecryptor(_ChunkCipher):
    """Decrypts and authenticates one file's payload chunk by chunk."""

    def __init__(self, data_key: bytes, header_digest: bytes, chunk_size: int = PLAINTEXT_CHUNK_SIZE):
        super().__init__(data_key, header_digest, chunk_size)

    def decrypt_chunk(self, index: int, ciphertext: Buffer, final: bool) -> bytes:
        """Open chunk ``index``; raises AuthenticationError if it is not exactly what was sealed there."""
        size = memoryview(ciphertext).nbytes
        full = self.chunk_size + TAG_SIZE
        if size < TAG_SIZE or size > full or (not final and size != full):
            raise AuthenticationError(f"payload chunk {index} has an impossible length ({size} bytes)")
        try:
            return self._aead.decrypt(_nonce(index, final), ciphertext, self._ad)
        except InvalidTag:
            raise AuthenticationError(
                f"payload chunk {index} failed authentication: the data was tampered with, "
                "reordered, truncated or spliced, or the header does not belong to it"
            ) from None

    def decrypt_stream(self, ciphertext_pieces: Iterable[Buffer]) -> Iterator[bytes]:
        """Decrypt ciphertext pieces of any sizes; yield each chunk's plaintext once it authenticated.

        The last chunk of the input is opened as the final chunk, so a stream
        cut at any point, or extended after its real end, raises
        AuthenticationError. The payload is complete and authentic only when
        this generator finishes without raising (see the module docstring).
        """
        full = self.chunk_size + TAG_SIZE
        decrypt, ad = self._aead.decrypt, self._ad
        index = 0
        for chunk, last in _rechunk(ciphertext_pieces, full):
            if len(chunk) < TAG_SIZE:
                if index == 0 and not len(chunk):
                    raise AuthenticationError("the payload is empty: its final chunk is missing")
                raise AuthenticationError(f"payload chunk {index} is truncated ({len(chunk)} bytes)")
            try:
                plaintext = decrypt(_nonce(index, last), chunk, ad)
            except InvalidTag:
                if last and len(chunk) == full:
                    why = "the stream may be truncated at a chunk boundary, or tampered with"
                elif last:
                    why = "the stream may be truncated, extended or tampered with"
                else:
                    why = "the data was tampered with, reordered or spliced"
                raise AuthenticationError(
                    f"payload chunk {index} failed authentication: {why} "
                    "(or the header does not belong to this payload)"
                ) from None
            yield plaintext
            index += 1
