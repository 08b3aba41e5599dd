"""What native backups of both engines share: the payload around the engine's dump, and media.

Why: a native backup is the engine's own image (SQLite database file,
``pg_dump -Fc`` archive) plus every file under MEDIA_ROOT, in one sealed
file, so the database and media come back from the same instant. Reading
stages the dump in a private folder and the media beside MEDIA_ROOT, all
hash-checked, before the engine-specific code swaps anything in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dbs_admin.backups import files_cache, payload, sizing, storage_media
from dbs_admin.backups.errors import IntegrityCheckError, PayloadError, RestoreError, UnsafePathError
from dbs_admin.backups.files import MEDIA, RestoreNames, check_not_protected, clean_name, file_roots, root_for_restore
from dbs_admin.backups.manifest import check_against_trailer
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.staging import StagedFile


def media_files() -> list[tuple[str, str, Path | None]]:
    """Every regular file under MEDIA_ROOT as ``(root id, name, path)``; symlinks leaving it, a database
    file and dbs_admin's own folders (a backup target inside MEDIA_ROOT, say) are skipped.

    When the default storage is not a local folder (S3...), every file of that storage instead, with no
    path: they are read through the storage (``storage_media``)."""
    in_storage = storage_media.root_for_all_media()
    if in_storage is not None:
        return [(in_storage, name, None) for name in storage_media.all_files(in_storage)]
    root = file_roots()[MEDIA]
    out = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".dbs-restore-"))
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            # os.walk does not follow folder links from the resolved root: only a file link needs resolving
            resolved = path.resolve() if path.is_symlink() else path
            if resolved is not path and not resolved.is_relative_to(root):
                continue
            try:
                check_not_protected(resolved, root)
            except UnsafePathError:
                continue
            if path.is_file():
                out.append((MEDIA, path.relative_to(root).as_posix(), path))
    return out


def stream(
    head: dict[str, Any], dump: Iterable[bytes], dump_info: dict[str, Any], reporter: Reporter,
    manifest: dict[str, Any] | None = None, dump_size: int | None = None,
    entries: list[tuple[str, str, Path | None]] | None = None,
    after_dump: Callable[[], None] | None = None,
) -> Iterator[bytes]:
    """The payload of a native backup: header, the dump's bytes, then every media file, then the trailer.

    ``manifest`` is completed with the dump's and the files' hashes (``dump``, ``file_sha256``) at the end.
    ``dump_size``: the dump's size, known beforehand (SQLite's copy) or estimated (``sizing.dump_bytes``), so
    progress has a total and the bar's database and files parts are sized by bytes.
    ``entries``: :func:`media_files` as the caller already listed them for the manifest (else listed here).
    ``after_dump``: called once the dump's last byte is out, before the files (still inside the caller's
    snapshot): what the capture must read in the snapshot but need not read before the dump tool starts.
    """
    entries = media_files() if entries is None else entries
    sizes = sizing.media_sizes(entries)
    media_total = sizing.file_bytes(sizes)
    sizing.announce(reporter, dump_size, media_total)
    yield payload.MAGIC
    yield payload.json_frame(payload.HEAD, head)
    yield payload.json_frame(payload.DUMP, dump_info)
    digest, size = hashlib.sha256(), 0
    for chunk in dump:
        reporter.check()
        digest.update(chunk)
        size += len(chunk)
        yield from payload.data_frames(chunk)
        reporter.report("database", size, dump_size)
    dump_end = {"size": size, "sha256": digest.hexdigest()}
    yield payload.json_frame(payload.END_DATA, dump_end)
    if after_dump is not None:
        after_dump()
    files, done_bytes = [], 0
    for root_id, name, path in entries:  # by bytes, as the dump
        reporter.check()
        reporter.report("files", done_bytes, media_total)
        hit = files_cache.reusable(root_id, name, None if path is None else Path(path))
        if hit is not None:  # a repository backup, and the file is unchanged since the last snapshot read it
            yield from files_cache.reused_frames({"root": root_id, "name": name, "ref": name}, hit)
            files.append([root_id, name, hit.size, hit.sha256])
            done_bytes += hit.size
            continue
        try:
            f = storage_media.open_file(root_id, name) if path is None else open(path, "rb")
        except OSError:
            continue
        if f is None:
            continue
        with f:
            fsize, sha = yield from payload.file_frames(f, {"root": root_id, "name": name, "ref": name})
            files.append([root_id, name, fsize, sha])
            done_bytes += fsize
    if manifest is not None:
        manifest.update(dump=dump_end, file_sha256=files)
    yield payload.json_frame(payload.TRAILER, {"dump": dump_end, "files": files})
    yield payload.frame(payload.END)


def read_chunks(stream: BinaryIO, size: int = payload.DATA_CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


@dataclass
class StagedNative:
    """A native backup read to its authenticated end: the dump file and the staged media."""

    engine: str
    dump_path: Path
    staging: storage_media.MixedStaging
    files: int = 0
    dump_size: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def stage(stream: BinaryIO, work: Path, *, dry_run: bool, reporter: Reporter,
          summary: dict[str, Any] | None = None) -> StagedNative:
    """Read the whole payload: dump to ``work/dump`` (0600), media into staging, every hash checked
    (against the trailer, and against the manifest ``summary`` when it lists them)."""
    frames = payload.read_frames(stream)
    kind, body = next(frames)
    head = payload.load_record(kind, body) if kind == payload.HEAD else None
    if head is None or head.get("kind") != "native":
        raise RestoreError("this is not a native backup")
    roots = file_roots()
    staging = storage_media.MixedStaging()
    names = RestoreNames()  # every name checked against the others and the live folders before it is staged
    result = StagedNative(engine=str(head.get("engine")), dump_path=work / "dump", staging=staging)
    current: StagedFile | None = None
    target: str | None = None
    # Progress by bytes: the manifest knows the dump's size and every file's (backups.sizing).
    dump_total, files_total = sizing.listed_dump_bytes(summary), sizing.listed_file_bytes(summary)
    sizing.announce(reporter, dump_total, files_total)
    files_done = 0
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    dump_end = None
    trailer = None
    sink = None
    key: tuple[str, str] | None = None
    try:
        for kind, body in frames:
            if kind == payload.DUMP:
                result.info = payload.load_record(kind, body)
                target = "dump"
                fd = os.open(result.dump_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                sink = StagedFile.__new__(StagedFile)
                sink.path, sink.final, sink.size = result.dump_path, result.dump_path, 0
                sink._f, sink._digest = os.fdopen(fd, "wb"), hashlib.sha256()
                current = sink
            elif kind == payload.FILE:
                spec = payload.load_record(kind, body)
                key = (spec.get("root"), spec.get("name"))
                target = "file"
                if storage_media.is_storage_root(spec.get("root")):
                    storage_media.storage_for(spec["root"])  # a storage this site lacks refuses the restore
                    name = clean_name(spec.get("name", ""))
                    final = Path(name)
                    root = None
                else:
                    root = root_for_restore(spec.get("root", ""), roots)
                    final = names.claim(root, spec.get("name", ""))
                reporter.report("files", files_done, files_total or None)
                if dry_run:
                    current = StagedFile.__new__(StagedFile)
                    current.path = current.final = final
                    current.size, current._digest = 0, hashlib.sha256()
                    current._f = open(os.devnull, "wb")
                elif root is None:
                    current = staging.new_storage_file(spec["root"], name)
                else:
                    current = staging.new_file(root, final)
            elif kind == payload.DATA:
                if current is None:
                    raise PayloadError("data outside a dump or file record")
                current.write(body)
                reporter.check()
                if target == "dump":
                    reporter.report("database", current.size, dump_total)
            elif kind == payload.END_DATA:
                if current is None:
                    raise PayloadError("end of data outside a dump or file record")
                end = payload.load_record(kind, body)
                current.finish(int(end.get("size", -1)), str(end.get("sha256", "")),
                               "database dump" if target == "dump" else key[1])
                if target == "dump":
                    dump_end = end
                    result.dump_size = current.size
                else:
                    seen[key] = (end["size"], end["sha256"])
                    result.files += 1
                    files_done += current.size
                current = None
            elif kind == payload.TRAILER:
                trailer = payload.load_record(kind, body)
            elif kind == payload.END:
                pass
            else:
                raise PayloadError(f"unexpected record {kind!r} in a native backup")
    except payload.MALFORMED as exc:
        if current is not None:
            current.abort()
        staging.cleanup()
        raise payload.malformed(exc) from exc
    except BaseException:
        if current is not None:
            current.abort()
        staging.cleanup()
        raise
    if trailer is None or dump_end is None:
        staging.cleanup()
        raise PayloadError("the backup's contents are incomplete (no dump or no trailer)")
    try:
        recorded = payload.file_index(trailer.get("files", []))
        if trailer.get("dump") != dump_end or recorded != seen:
            raise IntegrityCheckError("the backup's dump or files do not match the hashes it recorded")
        check_against_trailer(summary, trailer)
    except IntegrityCheckError:
        staging.cleanup()
        raise
    except payload.MALFORMED as exc:
        staging.cleanup()
        raise payload.malformed(exc) from exc
    return result
