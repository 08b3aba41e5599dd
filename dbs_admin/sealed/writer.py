"""``seal``: compress, encrypt and lay out a new sealed file, atomically, then verify it.

Pipeline (constant memory): source pieces -> zstd stream (compression.py) -> AES-256-GCM
chunks (aead.ChunkEncryptor) -> 64 KiB blocks with hashes and RS parity
(container.ContainerWriter) -> ``<dest>.tmp-<random>`` -> fsync, with the
keyless read-back of both copies running during it -> link/rename to ``dest``.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, BinaryIO

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dbs_admin.sealed.aead import PLAINTEXT_CHUNK_SIZE, ChunkEncryptor, derive_subkey
from dbs_admin.sealed.atomic import atomic_output
from dbs_admin.sealed.compression import compressed
from dbs_admin.sealed.container import ContainerWriter
from dbs_admin.sealed.errors import UsageError
from dbs_admin.sealed.keys import Argon2Params, describe_key_slots, new_data_key, parse_recipient, wrap_key_slots
from dbs_admin.sealed.layout import BLOCK_SIZE, FILE_ID_SIZE, Header
from dbs_admin.sealed.reports import SealReport

Source = str | os.PathLike | IO[bytes] | Iterable[bytes] | bytes | bytearray | memoryview

READ_SIZE = 1 << 20
MANIFEST_PURPOSE = b"manifest"
MANIFEST_NONCE_SIZE = 12
DEFAULT_ZSTD_LEVEL = 3
# zstd's own worker threads (compression.py: why, and how incompressible pieces skip the search)
DEFAULT_ZSTD_THREADS = 2 if (os.cpu_count() or 1) > 1 else 0


def source_chunks(source: Source, counter: list[int]) -> Iterator[bytes]:
    """Pieces of the source, counting bytes into ``counter[0]``.

    Accepts a path, a binary file object (anything with ``read``), a bytes-like
    object, or an iterable of bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        counter[0] += len(source)
        yield bytes(source)
        return
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
        with f:
            yield from source_chunks(f, counter)
        return
    read = getattr(source, "read", None)
    if read is not None:
        while True:
            piece = read(READ_SIZE)
            if not piece:
                return
            if isinstance(piece, str):
                raise UsageError("the source must be opened in binary mode")
            counter[0] += len(piece)
            yield piece
    for piece in source:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise UsageError(f"the source yielded {type(piece).__name__}, expected bytes")
        counter[0] += len(piece)
        yield piece


def encrypt_manifest(data_key: bytes, digest: bytes, envelope: Mapping) -> bytes:
    """Manifest record payload: nonce || AES-256-GCM(zstd(JSON)), AD = header digest."""
    try:
        text = json.dumps(envelope, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the manifest must be JSON-serialisable: {exc}") from None
    packed = zstandard.ZstdCompressor(level=DEFAULT_ZSTD_LEVEL).compress(text.encode("utf-8"))
    nonce = secrets.token_bytes(MANIFEST_NONCE_SIZE)
    return nonce + AESGCM(derive_subkey(data_key, MANIFEST_PURPOSE)).encrypt(nonce, packed, digest)


class _PeerFailed(Exception):
    """The other side of a hand-off failed; its own exception is the one to report."""


class _Handoff:
    """A bounded queue from the compressing thread to the encrypting/writing thread.

    Either side sets ``failed`` when it dies, so the other never waits forever.
    Depth x 1 MiB pieces bounds the memory it can hold.
    """

    _END = object()

    def __init__(self, depth: int = 8):
        self._queue: queue.Queue = queue.Queue(depth)
        self.failed = threading.Event()

    def put(self, item: object) -> None:
        while True:
            if self.failed.is_set():
                raise _PeerFailed
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self.put(self._END)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self.failed.is_set():
                    raise _PeerFailed from None
                continue
            if item is self._END:
                return
            yield item


def _check_keys(passphrase: str | bytes | None, recipients: list[str]) -> None:
    """Refuse obviously unusable keys at once, before any file or Argon2 work."""
    if passphrase is None and not recipients:
        raise UsageError("sealing needs a passphrase or at least one recipient")
    for recipient in recipients:
        parse_recipient(recipient)


def seal(
    source: Source,
    destination: str | os.PathLike[str],
    *,
    passphrase: str | bytes | None = None,
    recipients: Iterable[str] = (),
    manifest: Mapping | None = None,
    argon2: Argon2Params | None = None,
    allow_weak_argon2: bool = False,
    overwrite: bool = False,
    compression_level: int = DEFAULT_ZSTD_LEVEL,
    compression_threads: int = DEFAULT_ZSTD_THREADS,
    verify_after_write: bool = True,
    file_sha256: bool = False,
) -> SealReport:
    """Seal ``source`` into a new file at ``destination``; returns a SealReport.

    Needs a passphrase and/or recipients (X25519 public keys, ``dbs1...``).
    ``manifest`` is any JSON-able mapping; it is stored encrypted and
    redundantly, and comes back as ``open_sealed(...).manifest``. It is read
    once ``source`` is exhausted (the container stores it after the data), so
    a caller may complete it while the source streams, with what is known only
    at the end (hashes of what was streamed). The file
    appears at ``destination`` only once fully written, synced and verified;
    an existing file is refused unless ``overwrite=True``.

    Threads share the work (zstd, AES-GCM, numpy, hashlib and file I/O
    release the GIL): this one reads and compresses; a writer thread derives
    the key slots (Argon2 overlaps the first compression), encrypts and writes;
    the container's two workers compute the Reed-Solomon parity, BLAKE2b
    hashes and CRCs of two batches side by side; zstd adds
    ``compression_threads`` workers of its own (0: compress on this thread).
    The verify-after-write read-back runs while the final fsync flushes.

    ``file_sha256=True`` (with the verify-after-write pass) also returns the
    finished file's SHA-256 in the report, computed while writing and
    reading back, for callers that record or publish it: cheaper than reading
    the file again, but not free, so only on request.
    """
    started = time.monotonic()
    recipients = list(recipients)
    if manifest is not None and not isinstance(manifest, Mapping):
        raise UsageError("the manifest must be a mapping (a dict)")
    _check_keys(passphrase, recipients)
    data_key = new_data_key()
    file_id = secrets.token_bytes(FILE_ID_SIZE)
    input_size = [0]
    compressed_size = [0]
    checked = [False]
    state: dict = {}
    handoff = _Handoff()

    def check(tmp: Path) -> None:
        if verify_after_write:
            state["sha256"] = state["writer"].check_written(tmp)
            checked[0] = True

    def encrypt_and_write(f: BinaryIO) -> None:
        try:
            slots = wrap_key_slots(data_key, passphrase=passphrase, recipients=recipients,
                                   argon2=argon2 if argon2 is not None else Argon2Params(),
                                   allow_weak=allow_weak_argon2)
            header = Header(file_id=file_id, created=int(time.time()), block_size=BLOCK_SIZE,
                            chunk_size=PLAINTEXT_CHUNK_SIZE, slots=slots)
            writer = state["writer"] = ContainerWriter(f, header, hash_file=file_sha256 and verify_after_write,
                                                        read_back=verify_after_write)
            state["slots"] = slots
            try:
                encryptor = ChunkEncryptor(data_key, writer.digest, header.chunk_size)
                for chunk in encryptor.encrypt_stream(handoff):
                    writer.feed(chunk)
                envelope = {"format": 1, "manifest": dict(manifest or {}), "plaintext_size": input_size[0],
                            "compressed_size": compressed_size[0]}
                state["size"] = writer.finish(encrypt_manifest(data_key, writer.digest, envelope))
            finally:
                writer.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread below
            state["error"] = exc
            handoff.failed.set()

    with atomic_output(destination, overwrite=overwrite, check=check, check_while_syncing=True) as f:
        consumer = threading.Thread(target=encrypt_and_write, args=(f,), name="dbs-seal-writer", daemon=True)
        consumer.start()
        try:
            for piece in compressed(source_chunks(source, input_size), compression_level, compressed_size,
                                    compression_threads):
                handoff.put(piece)
            handoff.close()
        except _PeerFailed:
            pass
        except BaseException:
            handoff.failed.set()
            consumer.join()
            raise
        consumer.join()
        error = state.get("error")
        if error is not None and not isinstance(error, _PeerFailed):
            raise error
    writer = state["writer"]
    return SealReport(
        path=str(destination), size=state["size"], input_size=input_size[0],
        compressed_size=compressed_size[0], data_length=writer.data_length, block_count=writer.block_count,
        file_id=file_id.hex(), key_slots=describe_key_slots(state["slots"]), verified=checked[0],
        sha256=state.get("sha256"), seconds=time.monotonic() - started,
    )


__all__ = ["seal", "source_chunks", "encrypt_manifest"]
