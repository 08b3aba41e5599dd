"""What a backup says it holds, read from the backup itself: tables, columns, counts, files and hashes.

Why read it separately from the restore: the checks must compare what
landed in the scratch database against what the backup claims, and the
claim (per-file sha256, final counts, the files that were missing at capture
time) lives in the payload's trailer, which the restore consumes but does not
return. One streaming pass over the payload, skipping data bytes, gives it in
constant memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbs_admin.backups import payload
from dbs_admin.sealed import open_sealed


@dataclass
class Inventory:
    manifest: dict[str, Any] = field(default_factory=dict)  # the sealed file's manifest summary
    head: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {table, columns, pk}
    counts: dict[str, int] = field(default_factory=dict)  # trailer's final row counts
    files: list[dict[str, Any]] = field(default_factory=list)  # root, name, size, sha256
    missing_files: list[list[str]] = field(default_factory=list)  # [root, name] absent at capture time
    native: dict[str, Any] | None = None  # the DUMP record of a native backup
    file_problems: list[str] = field(default_factory=list)  # file bytes that disagree with their own record
    has_trailer: bool = False


def read_inventory(path: str | Path, *, passphrase: str | None = None, identity: Any = None) -> Inventory:
    inv = Inventory()
    current: dict[str, Any] | None = None
    digest = hashlib.sha256()
    seen: dict[tuple[str, str], str] = {}
    with open_sealed(path, passphrase=passphrase, identity=identity) as reader:
        inv.manifest = dict(reader.manifest)
        for kind, body in payload.read_frames(reader):
            if kind == payload.DATA:
                digest.update(body)
            elif kind == payload.FILE:
                current, digest = payload.load_json(body), hashlib.sha256()
            elif kind == payload.END_DATA and current is not None:
                sha = digest.hexdigest()
                if sha != payload.load_json(body).get("sha256"):
                    where = f"{current.get('root')}/{current.get('name')}"
                    inv.file_problems.append(f"{where}: bytes differ from their hash")
                seen[(current.get("root"), current.get("name"))] = sha
                current = None
            elif kind == payload.HEAD:
                inv.head = payload.load_json(body)
            elif kind == payload.MODEL:
                record = payload.load_json(body)
                inv.models[record["model"]] = record
            elif kind == payload.DUMP:
                inv.native = payload.load_json(body)
            elif kind == payload.TRAILER:
                trailer = payload.load_json(body)
                inv.has_trailer = True
                inv.counts = dict(trailer.get("counts") or {})
                inv.missing_files = [list(m) for m in trailer.get("missing_files") or []]
                for entry in trailer.get("files") or []:
                    if isinstance(entry, dict):
                        inv.files.append(entry)
                    else:
                        root, name, size, sha = entry[:4]
                        inv.files.append({"root": root, "name": name, "size": size, "sha256": sha})
    for entry in inv.files:
        got = seen.get((entry["root"], entry["name"]))
        if got is None:
            inv.file_problems.append(f"{entry['root']}/{entry['name']}: listed but its bytes are not in the backup")
        elif got != entry["sha256"]:
            inv.file_problems.append(f"{entry['root']}/{entry['name']}: bytes differ from the recorded sha256")
    return inv
