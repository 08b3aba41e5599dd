"""Index and snapshot objects: one encrypted, compressed MessagePack document each, sealed as an object.

The data stream of such an object is the container's own payload encryption
(``aead.ChunkEncryptor`` over zstd, with the object key and header digest),
so it is authenticated end to end exactly like a ``.dbs`` payload.

Index objects: every backup publishes one listing the chunks it added
(``entries``: 53 bytes per chunk, see ``ENTRY``); the repository's index is
the union of all of them, and can be rebuilt from the packs' manifests. Two
backups running at once each publish their own, so nothing is ever
rewritten in place and no lock is needed to add.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import msgpack
import zstandard

from dbs_admin.sealed.aead import ChunkDecryptor, ChunkEncryptor
from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.repo.objects import SealedObject, WrittenObject, write_object
from dbs_admin.sealed.repo.packs import Entry
from dbs_admin.sealed.repo.store import ObjectStore

INDEX_PREFIX = "index/"
SNAPSHOT_PREFIX = "snapshots/"
ENTRY = struct.Struct("<32sIQIIBQ")  # chunk id, pack number (in "packs"), offset, length, seq, flags, raw length
_MAX_DOC = 1 << 31


def write_record(store: ObjectStore, name: str, kind: str, doc: dict, *, repository_key: bytes,
                 repository_id: bytes) -> WrittenObject:
    packed = zstandard.ZstdCompressor(level=3).compress(msgpack.packb(doc, use_bin_type=True))

    def data(key: bytes, digest: bytes) -> Iterator[bytes]:
        return ChunkEncryptor(key, digest).encrypt_stream([packed])

    return write_object(store, name, repository_key=repository_key, repository_id=repository_id, kind=kind,
                        data=data, manifest={}, size_hint=len(packed))


def read_record(store: ObjectStore, name: str, kind: str, *, repository_key: bytes, repository_id: bytes) -> dict:
    with SealedObject(store, name, repository_key=repository_key, repository_id=repository_id, kind=kind) as obj:
        cipher = obj.read_all()
        plain = b"".join(ChunkDecryptor(obj.key, obj.digest).decrypt_stream([cipher]))
    try:
        doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(plain, max_output_size=_MAX_DOC), raw=False)
    except (zstandard.ZstdError, ValueError, msgpack.UnpackException):
        raise SealedError(f"repository object {name} is authentic but unreadable (a newer format?)") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise SealedError(f"repository object {name} has an unknown structure")
    return doc


def encode_index(entries: dict[bytes, Entry]) -> dict:
    packs = sorted({e.pack for e in entries.values()})
    number = {p: i for i, p in enumerate(packs)}
    blob = b"".join(ENTRY.pack(cid, number[e.pack], e.offset, e.length, e.seq, e.flags, e.raw_length)
                    for cid, e in entries.items())
    return {"format": 1, "packs": packs, "entries": blob}


def decode_index(doc: dict) -> Iterator[tuple[bytes, Entry]]:
    packs = doc["packs"]
    blob = doc["entries"]
    if len(blob) % ENTRY.size:
        raise SealedError("an index object's entries are truncated")
    for cid, pack, offset, length, seq, flags, raw in ENTRY.iter_unpack(blob):
        yield cid, Entry(packs[pack], offset, length, seq, flags, raw)
