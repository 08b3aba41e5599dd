"""A backup snapshot read back as the payload of a sealed file, and exported as a standalone ``.dbs``.

Why here, below Django: a snapshot must be exportable (and so restorable
anywhere) with nothing but this package, as ``python -m dbs_admin.sealed
repo-export`` on a rescue machine; ``backups.repository`` reads snapshots for
restores through the same ``SnapshotReader``.

What a backup snapshot holds (written by ``backups.repository``; the layout is
in docs/FORMAT.md, part 2): the payload's magic and HEAD frame in the record's
``meta["head"]``, the rest of the payload as stream ``payload`` (each ROWS
frame cut into one-row frames), the manifest in ``meta["manifest"]`` but for
its list of file hashes, which is stream ``file_sha256`` (JSON). Reading gives
the payload with consecutive one-row frames merged into batches again (what a
restore inserts at once); only the frame prefix (a type byte and a 4-byte
big-endian length) and MessagePack's array header are read here, no row.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from dbs_admin.sealed.errors import SealedError, SnapshotNotFoundError, UsageError
from dbs_admin.sealed.repo.repository import Repository

PREFIX = struct.Struct(">cI")
PAYLOAD_MAGIC = b"DBSPAYL\x01"  # docs/PAYLOAD.md
ROWS = b"R"
STREAM = "payload"
MANIFEST_STREAM = "file_sha256"
FILE_LIST = "file_sha256"
REBATCH_ROWS = 2000  # as the capture's batches (BATCH_SIZE): a restore inserts as many rows at once as from a file
REBATCH_BYTES = 4 << 20


MARKER = b"marker"  # the type ``frames`` gives a piece that stands for records (a writer's files-cache hit)


def frames(pieces: Iterable[Any], markers: tuple[type, ...] = ()) -> Iterator[tuple[bytes, Any]]:
    """``(type, whole frame bytes)`` of a payload stream given as pieces; the magic comes as type b"".

    A piece that is an instance of one of ``markers`` (a writer's placeholder for records it already stored,
    such as an unchanged file's chunk ids) is passed through as ``(MARKER, piece)``; it must fall between
    records."""
    buf = bytearray()
    magic_seen = False
    for piece in pieces:
        if markers and isinstance(piece, markers):
            if buf:
                raise SealedError("the backup's payload has a stored file's placeholder inside a record")
            yield MARKER, piece
            continue
        if not buf and magic_seen and type(piece) is bytes and len(piece) >= PREFIX.size:
            kind, length = PREFIX.unpack_from(piece)
            if PREFIX.size + length == len(piece):  # a whole frame (what a capture mostly yields): no copy
                yield kind, piece
                continue
        buf += piece
        pos = 0
        if not magic_seen:
            if len(buf) < len(PAYLOAD_MAGIC):
                continue
            yield b"", bytes(buf[: len(PAYLOAD_MAGIC)])
            pos, magic_seen = len(PAYLOAD_MAGIC), True
        while len(buf) - pos >= PREFIX.size:
            kind, length = PREFIX.unpack_from(buf, pos)
            end = pos + PREFIX.size + length
            if end > len(buf):
                break
            yield kind, bytes(buf[pos:end])
            pos = end
        del buf[:pos]
    if buf:
        raise SealedError("the backup's payload ended inside a record")


def _batch_prefix(count: int, size: int) -> tuple[bytes, bytes]:
    """The frame prefix and MessagePack array header of a ROWS frame of ``count`` rows of ``size`` bytes."""
    head = bytes([0x90 | count]) if count < 16 else (b"\xdc" + count.to_bytes(2, "big") if count < 65536
                                                      else b"\xdd" + count.to_bytes(4, "big"))
    return PREFIX.pack(ROWS, len(head) + size), head


def rebatched(pieces: Iterable[bytes]) -> Iterator[bytes | memoryview]:
    """The payload with consecutive one-row ROWS frames merged into batches (what a restore inserts at once).

    Each chunk is walked in place: a frame wholly inside it is passed on as a slice of it (a row as a slice of
    its body), and only a frame cut across chunks (file bytes, mostly) is joined. A frame comes as two pieces,
    its prefix and its body, so a reader asking for one or the other gets it without a copy."""
    rows: list[memoryview] = []
    size = 0
    parts: list[Any] = []  # the start of a frame cut across chunks, and how many bytes make it whole
    have = need = 0
    magic_seen = False
    unpack = PREFIX.unpack_from
    for piece in pieces:
        if parts:
            parts.append(piece)
            have += len(piece)
            if have < need:
                continue
            data = b"".join(parts)
            parts, have = [], 0
        else:
            data = piece
        view = memoryview(data)
        end_all = len(data)
        pos = 0
        if not magic_seen:
            if end_all < len(PAYLOAD_MAGIC):
                parts, have, need = [data], end_all, len(PAYLOAD_MAGIC)
                continue
            yield bytes(view[: len(PAYLOAD_MAGIC)])
            pos, magic_seen = len(PAYLOAD_MAGIC), True
        while end_all - pos >= 5:  # PREFIX.size
            kind, length = unpack(data, pos)
            end = pos + 5 + length
            if end > end_all:
                break
            if kind == ROWS and length and data[pos + 5] == 0x91:
                rows.append(view[pos + 6 : end])
                size += length - 1
                if len(rows) >= REBATCH_ROWS or size >= REBATCH_BYTES:
                    prefix, head = _batch_prefix(len(rows), size)
                    yield prefix
                    yield b"".join([head, *rows])
                    rows, size = [], 0
            else:
                if rows:
                    prefix, head = _batch_prefix(len(rows), size)
                    yield prefix
                    yield b"".join([head, *rows])
                    rows, size = [], 0
                yield view[pos : pos + PREFIX.size]
                yield view[pos + PREFIX.size : end]
            pos = end
        if pos < end_all:
            rest = view[pos:]
            parts, have = [rest], len(rest)
            need = PREFIX.size + unpack(data, pos)[1] if len(rest) >= PREFIX.size else PREFIX.size
    if parts:
        raise SealedError("the backup's payload ended inside a record")
    if rows:
        prefix, head = _batch_prefix(len(rows), size)
        yield prefix
        yield b"".join([head, *rows])


class SnapshotReader:
    """A snapshot's payload as the restore reads a sealed file: ``manifest``, ``read(n)``, ``healed_blocks``.

    Every chunk is authenticated and checked against its keyed id as it is
    read; ``read`` returns b"" only once every chunk of the snapshot was read.
    """

    healed_blocks: list[int] = []

    def __init__(self, repo: Repository, name: str):
        info = repo.snapshot(name)
        if "head" not in info.meta or STREAM not in info.streams:
            raise UsageError(f"snapshot {name} is not a dbs_admin backup (no payload stream)")
        self.manifest: dict = {**info.meta.get("manifest", {}),
                               FILE_LIST: json.loads(b"".join(repo.read_stream(info, MANIFEST_STREAM)))}
        self._pieces = rebatched(itertools.chain([info.meta["head"]], repo.read_stream(info, STREAM)))
        self._piece: bytes | memoryview = b""  # the piece being read, and how far
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all if ``n < 0``); a read that is exactly one piece (a frame's prefix or body) is
        that piece, with no copy; others copy only what they return."""
        piece, pos = self._piece, self._pos
        if n is None or n < 0:
            out = b"".join([piece[pos:], *self._pieces])
            self._piece, self._pos = b"", 0
            return out
        if len(piece) - pos >= n:
            self._pos = pos + n
            if pos == 0 and n == len(piece) and type(piece) is bytes:
                return piece
            return bytes(piece[pos : pos + n])
        out = [piece[pos:]]
        got = len(piece) - pos
        while got < n:
            piece = next(self._pieces, None)
            if piece is None:
                self._piece, self._pos = b"", 0
                return b"".join(out)
            if got == 0 and len(piece) >= n:
                self._piece, self._pos = piece, 0
                return self.read(n)
            take = min(n - got, len(piece))
            out.append(piece[:take])
            got += take
            self._piece, self._pos = piece, take
        return b"".join(out)

    def close(self) -> None:
        self._pieces.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backup_snapshot(repo: Repository, name: str) -> SnapshotReader:
    """The reader of snapshot ``name``; SnapshotNotFoundError naming it when the repository has no such one."""
    if name not in repo.snapshot_names():
        raise SnapshotNotFoundError(f"the repository holds no snapshot named {name!r}")
    return SnapshotReader(repo, name)


def export_snapshot(repo: Repository, name: str, destination: Any, **keys: Any) -> Any:
    """Seal snapshot ``name`` into a new standalone ``.dbs`` file at ``destination`` (a SealReport).

    ``keys`` are the writer's (passphrase, recipients, argon2 ...). The file appears only once whole and
    verified (the writer's atomic publication); an existing ``destination`` is refused unless ``overwrite``.
    """
    from dbs_admin.sealed.writer import seal

    with open_backup_snapshot(repo, name) as reader:
        return seal(reader, destination, manifest=reader.manifest, file_sha256=True, **keys)
