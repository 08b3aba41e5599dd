"""Backups broken on purpose, the ways real ones break: damaged sectors, a lost row, a missing file."""

from __future__ import annotations

import random
from pathlib import Path

from dbs_admin.backups import payload
from dbs_admin.sealed import open_sealed, seal
from dbs_admin.sealed.structure import load_structure


def damage_beyond_repair(path: Path, block: int = 0) -> None:
    """XOR-flip every byte of one block in BOTH copies: more than Reed-Solomon can correct."""
    with open(path, "rb") as f:
        structure = load_structure(f, path.stat().st_size)
    size = structure.table.block_size
    record = size + 32 * -(-size // 223)
    buf = bytearray(path.read_bytes())
    rng = random.Random(11)
    for base in structure.locator.copies:
        for i in range(base + block * record, base + (block + 1) * record):
            buf[i] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(buf))


def reseal_without_row(source: Path, dest: Path, *, label: str, pk: int, identity, recipient: str) -> None:
    """The same backup with one row of ``label`` left out and the payload's own count lowered to match.

    What a capture that silently skipped a row would write: the payload is
    self-consistent, but the manifest (counted up front) still claims the row.
    """
    frames: list[bytes] = [payload.MAGIC]
    with open_sealed(source, identity=identity) as reader:
        manifest = dict(reader.manifest)
        current = None
        for kind, body in payload.read_frames(reader):
            if kind == payload.MODEL:
                current = payload.load_json(body)["model"]
            elif kind == payload.ROWS and current == label:
                rows = [r for r in payload.load_rows(body) if r[0] != pk]
                frames.append(payload.rows_frame(rows))
                continue
            elif kind == payload.TRAILER:
                trailer = payload.load_json(body)
                trailer["counts"][label] -= 1
                frames.append(payload.json_frame(payload.TRAILER, trailer))
                continue
            frames.append(payload.frame(kind, body))
    seal(iter(frames), dest, manifest=manifest, recipients=[recipient])
