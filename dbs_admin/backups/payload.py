"""The inner stream of a backup: what the sealed container compresses, encrypts and protects.

Why a framed binary stream rather than one JSON document: rows and file bytes
must flow through in constant memory in both directions, and a reader must
know where a file's bytes end without holding them. Every frame is
``type (1 byte) | length (uint32, big-endian) | body``. The grammar and the
meaning of every frame are specified in docs/PAYLOAD.md; change both together.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Generator, Iterator
from typing import Any, BinaryIO

import msgpack

from dbs_admin.backups.errors import PayloadError

MAGIC = b"DBSPAYL\x01"
FORMAT = 1
MAX_FRAME = 64 * 1024 * 1024  # a rows batch or data chunk larger than this is hostile or corrupt
DATA_CHUNK = 1024 * 1024

HEAD = b"H"  # JSON: format, kind, engine, created_at ...
REFS = b"C"  # JSON: content types and permissions by natural key, with their source ids
MODEL = b"M"  # JSON: model label, table, column attnames, pk attname
ROWS = b"R"  # MessagePack: array of rows, each an array in column order
FILE = b"F"  # JSON: root, name, ref, size; followed by DATA* then END_DATA
DUMP = b"N"  # JSON: engine, format; followed by DATA* then END_DATA
DATA = b"D"  # raw bytes (at most DATA_CHUNK)
END_DATA = b"Z"  # JSON: size, sha256 of the preceding DATA frames
TRAILER = b"T"  # JSON: final row counts, every file with its sha256
END = b"E"  # empty; nothing may follow

_PREFIX = struct.Struct(">cI")
KNOWN = {HEAD, REFS, MODEL, ROWS, FILE, DUMP, DATA, END_DATA, TRAILER, END}


def frame(kind: bytes, body: bytes = b"") -> bytes:
    return _PREFIX.pack(kind, len(body)) + body


def json_frame(kind: bytes, obj: Any) -> bytes:
    return frame(kind, json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())


def rows_frame(rows: list) -> bytes:
    """A ROWS frame. MessagePack, not JSON: a tenth of the time for the bulk of a backup, and as safe to read."""
    return frame(ROWS, msgpack.packb(rows, use_bin_type=True))


def _no_extensions(code: int, data: bytes) -> Any:
    raise PayloadError(f"a batch of rows in the backup holds a MessagePack extension type ({code}) that a backup "
                       "never contains; the file is corrupt or crafted")


def load_rows(body: bytes) -> list:
    try:
        rows = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False, ext_hook=_no_extensions)
    except PayloadError:
        raise
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError):
        raise PayloadError("a batch of rows in the backup is unreadable; the file is corrupt") from None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise PayloadError("a batch of rows in the backup has the wrong shape; the file is corrupt")
    return rows


def data_frames(chunk: bytes) -> Iterator[bytes]:
    """A DATA frame for ``chunk`` as two pieces (prefix, body), so large chunks are not copied."""
    yield _PREFIX.pack(DATA, len(chunk))
    yield chunk


def file_frames(f: BinaryIO, header: dict[str, Any]) -> Generator[bytes, None, tuple[int, str]]:
    """One file: its FILE frame, its data frames, and END_DATA with the size and sha256 actually read.

    The size and hash come from the bytes streamed, not from a stat taken
    earlier, so a file that changes while it is read is recorded as it went
    out. Returns ``(size, sha256)`` to ``yield from``.
    """
    yield json_frame(FILE, header)
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(DATA_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        yield from data_frames(chunk)
    sha = digest.hexdigest()
    yield json_frame(END_DATA, {"size": size, "sha256": sha})
    return size, sha


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts = []
    left = n
    while left:
        piece = stream.read(left)
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) != n:
        raise PayloadError("the backup's contents end in the middle of a record; the file is incomplete")
    return data


def read_frames(stream: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """``(type, body)`` of every frame up to and including END; checks magic, sizes and known types.

    After END the stream is read once more so the sealed reader reaches (and
    authenticates) its end; trailing bytes are an error.
    """
    if _read_exact(stream, len(MAGIC)) != MAGIC:
        raise PayloadError("this sealed file does not hold a dbs_admin backup (unknown contents format)")
    while True:
        prefix = stream.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size:
            prefix += _read_exact(stream, _PREFIX.size - len(prefix)) if prefix else b""
        if not prefix:
            raise PayloadError("the backup's contents end without their closing record; the file is incomplete")
        kind, length = _PREFIX.unpack(prefix)
        if kind not in KNOWN:
            raise PayloadError(f"unknown record type {kind!r} in the backup; was it written by a newer version?")
        if length > MAX_FRAME:
            raise PayloadError(f"a record of {length} bytes exceeds the limit; the backup is corrupt or hostile")
        body = _read_exact(stream, length) if length else b""
        yield kind, body
        if kind == END:
            if stream.read(1):
                raise PayloadError("data follows the closing record of the backup; the file is corrupt")
            return


def file_index(entries: list) -> dict[tuple[str, str], tuple[int, str]]:
    """A trailer's (or manifest's) file list ``[[root, name, size, sha256], ...]`` keyed by file:
    ``{(root, name): (size, sha256)}``, the form readers compare."""
    return {(root, name): (size, sha) for root, name, size, sha in entries}


def load_json(body: bytes) -> Any:
    """A JSON record; refused (never a RecursionError) when it is malformed or nested beyond reason."""
    try:
        return json.loads(body)
    except ValueError:
        raise PayloadError("a record of the backup is not valid JSON; the file is corrupt") from None
    except RecursionError:
        raise PayloadError("a record of the backup is nested too deeply to be one of ours; the file is corrupt "
                           "or hostile") from None


NAMES = {HEAD: "header", REFS: "references", MODEL: "table", ROWS: "rows", FILE: "file", DUMP: "dump", DATA: "data",
         END_DATA: "end-of-data", TRAILER: "trailer", END: "end"}
# The keys a reader relies on, and their types (writers may add more; a reader ignores what it does not know).
REQUIRED: dict[bytes, dict[str, type | tuple[type, ...]]] = {
    MODEL: {"model": str, "columns": list, "pk": str},
    FILE: {"root": str, "name": str},
    END_DATA: {"size": int, "sha256": str},
}
# Keys a reader uses with a default when absent: if present, they must have these types.
OPTIONAL: dict[bytes, dict[str, type | tuple[type, ...]]] = {
    REFS: {"contenttypes": list, "permissions": list},
    TRAILER: {"counts": dict, "files": list},
}


def load_record(kind: bytes, body: bytes) -> dict[str, Any]:
    """A JSON record of ``kind``: an object with the keys readers rely on, of the right types; else PayloadError."""
    obj = load_json(body)
    name = NAMES.get(kind, repr(kind))
    if not isinstance(obj, dict):
        raise PayloadError(f"a {name} record of the backup is not a JSON object; the file is corrupt or crafted")
    for key, wanted in REQUIRED.get(kind, {}).items():
        value = obj.get(key)
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise PayloadError(f"a {name} record of the backup lacks a valid {key!r}; the file is corrupt or crafted")
    for key, wanted in OPTIONAL.get(kind, {}).items():
        if key in obj and not isinstance(obj[key], wanted):
            raise PayloadError(f"a {name} record of the backup has an invalid {key!r}; the file is corrupt or crafted")
    return obj


# What malformed contents that passed the checks above can still raise while they are interpreted (a trailer
# entry of three items, a count that is a string): readers turn these into PayloadError, never a traceback.
MALFORMED = (TypeError, KeyError, AttributeError, IndexError, ValueError)


def malformed(exc: BaseException) -> PayloadError:
    return PayloadError(f"the backup's contents are malformed ({type(exc).__name__}: {str(exc)[:120]}); "
                        "the file is corrupt or crafted, and nothing was restored")
