"""``open_sealed``: a readable stream of a sealed file's contents, healed and authenticated.

Trust contract (read this before consuming the stream): every byte handed
out has passed its block hash and its AES-GCM chunk tag, but the stream is
only known to be *complete* when a read returns b"" (EOF) without raising:
a file cut short, or tampered with after a certain point, raises
AuthenticationError or UnrecoverableError part way through. So a consumer
must stage what it reads and commit nothing before EOF. ``read_all_to``
does exactly that for files: it writes a temporary name and renames only
after the whole stream authenticated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dbs_admin.sealed.aead import ChunkDecryptor, derive_subkey
from dbs_admin.sealed.atomic import atomic_output, write_all
from dbs_admin.sealed.blocks import BlockReader
from dbs_admin.sealed.errors import AuthenticationError, SealedError, UnrecoverableError, UsageError
from dbs_admin.sealed.keys import Identity, unwrap_key_slots
from dbs_admin.sealed.metadata import file_size_of
from dbs_admin.sealed.structure import Structure, load_structure
from dbs_admin.sealed.writer import MANIFEST_NONCE_SIZE, MANIFEST_PURPOSE

READ_SIZE = 1 << 20
_MAX_MANIFEST = 1 << 30


def decrypt_manifest(data_key: bytes, digest: bytes, payload: bytes) -> dict:
    """Open the manifest record payload (see writer.encrypt_manifest)."""
    nonce, ciphertext = payload[:MANIFEST_NONCE_SIZE], payload[MANIFEST_NONCE_SIZE:]
    try:
        packed = AESGCM(derive_subkey(data_key, MANIFEST_PURPOSE)).decrypt(nonce, ciphertext, digest)
    except InvalidTag:
        raise AuthenticationError(
            "the manifest failed authentication: it was tampered with or belongs to another file"
        ) from None
    try:
        text = zstandard.ZstdDecompressor().decompress(packed, max_output_size=_MAX_MANIFEST)
        envelope = json.loads(text)
    except (zstandard.ZstdError, ValueError):
        raise SealedError(
            "the manifest is authentic but unreadable; was it written by a newer version?"
        ) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("manifest"), dict):
        raise SealedError("the manifest has an unknown structure")
    return envelope


class _IterReader:
    """A minimal ``read(n)`` file over an iterator of bytes (what zstd's stream_reader needs)."""

    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces
        self._buf = b""
        self._pos = 0
        self.exhausted = False

    def read(self, n: int = -1) -> bytes:
        while len(self._buf) - self._pos < (n if n >= 0 else 1 << 62) and not self.exhausted:
            try:
                piece = next(self._pieces)
            except StopIteration:
                self.exhausted = True
                break
            self._buf = self._buf[self._pos :] + piece
            self._pos = 0
        end = len(self._buf) if n < 0 else self._pos + n
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out

    def drain(self) -> int:
        """Consume the rest (this is what authenticates the final chunk); returns bytes left over."""
        left = len(self._buf) - self._pos
        for piece in self._pieces:
            left += len(piece)
        self.exhausted = True
        return left


class SealedReader:
    """The decrypted contents of a sealed file as a binary stream (``read``, iteration, ``read_all_to``).

    ``manifest`` is available at once; ``healed_blocks`` lists the data blocks
    that were damaged and healed so far. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], *, passphrase: str | bytes | None = None,
                 identity: Identity | None = None):
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")
        except OSError as exc:
            raise UsageError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            size = file_size_of(self._f)
            self.structure: Structure = load_structure(self._f, size)
            header = self.structure.header
            data_key = unwrap_key_slots(header.slots, passphrase=passphrase, identity=identity)
            if self.structure.manifest_payload is None:
                raise UnrecoverableError("the manifest is damaged beyond repair in both copies",
                                         regions=("manifest",))
            envelope = decrypt_manifest(data_key, self.structure.digest, self.structure.manifest_payload)
            self.manifest: dict = envelope["manifest"]
            self.plaintext_size: int = int(envelope.get("plaintext_size", -1))
            self._blocks = BlockReader(self._f, size, self.structure.table)
            decryptor = ChunkDecryptor(data_key, self.structure.digest, header.chunk_size)
            self._data = self._blocks.iter_data()
            self._source = _IterReader(decryptor.decrypt_stream(self._data))
            self._z = zstandard.ZstdDecompressor().stream_reader(
                self._source, read_size=READ_SIZE, read_across_frames=False, closefd=False
            )
        except BaseException:
            self._f.close()
            raise
        self._returned = 0
        self._eof = False

    @property
    def healed_blocks(self) -> list[int]:
        return list(self._blocks.healed)

    @property
    def damaged_regions(self) -> list[str]:
        return self.structure.damaged_regions

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` verified bytes (all remaining if ``n < 0``); b"" only at authenticated EOF."""
        if self._eof:
            return b""
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(READ_SIZE), b""))
        if n == 0:
            return b""
        try:
            out = self._z.read(n)
        except zstandard.ZstdError:
            raise SealedError(
                "the decrypted stream does not decompress; the file was written wrongly"
            ) from None
        if out:
            self._returned += len(out)
            return out
        self._finish()
        return b""

    def _finish(self) -> None:
        self._source.drain()
        if self.plaintext_size >= 0 and self._returned != self.plaintext_size:
            raise SealedError(
                f"decompressed {self._returned} bytes but the manifest records {self.plaintext_size}"
            )
        self._eof = True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        """Chunks of up to 1 MiB; the iteration ends only at authenticated EOF."""
        return iter(lambda: self.read(READ_SIZE), b"")

    def read_all_to(self, destination: str | os.PathLike[str] | BinaryIO, *, overwrite: bool = False) -> int:
        """Write the whole contents to ``destination``; returns the byte count.

        For a path, the output appears (atomically) only after the entire
        stream authenticated; on any error nothing is left behind. A file
        object is written as the stream goes, so the caller owns staging then.
        """
        if hasattr(destination, "write"):
            total = 0
            for chunk in self:
                destination.write(chunk)
                total += len(chunk)
            return total
        total = 0
        with atomic_output(destination, overwrite=overwrite) as f:
            for chunk in self:
                write_all(f, chunk)
                total += len(chunk)
        return total

    def close(self) -> None:
        """Stop the read-ahead thread and close the file (reading may stop before EOF)."""
        self._data.close()
        self._f.close()

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(f: BinaryIO, size: int, *, passphrase: str | bytes | None = None,
                  identity: Identity | None = None, scan_file: bool = False) -> dict:
    """The manifest of the sealed file open as ``f`` (seekable), reading only its metadata regions.

    Why: showing what a restore would do needs the manifest, not the data; a
    file on a remote target is then read by ranges (header, block table and
    manifest, each healed from its second copy as always), never fetched
    whole. The key is checked exactly as by :func:`open_sealed`. ``scan_file`` lets a lost locator be
    made up for by searching the whole file (cheap for a local file only).
    """
    structure = load_structure(f, size, scan_file=scan_file)
    data_key = unwrap_key_slots(structure.header.slots, passphrase=passphrase, identity=identity)
    if structure.manifest_payload is None:
        raise UnrecoverableError("the manifest is damaged beyond repair in both copies", regions=("manifest",))
    return decrypt_manifest(data_key, structure.digest, structure.manifest_payload)["manifest"]


def open_sealed(path: str | os.PathLike[str], *, passphrase: str | bytes | None = None,
                identity: Identity | None = None) -> SealedReader:
    """Open a sealed file for reading (see the module docstring for the trust contract)."""
    return SealedReader(path, passphrase=passphrase, identity=identity)
