"""``validate_backup`` and ``read_manifest``: check a backup without touching any database.

Why two levels (like restic ``check`` / ``--read-data``): the keyless check
(structure, block hashes, parity, healing margin) needs no secret and is
cheap enough to run after every upload; with the key, every chunk is
authenticated AND the contents are parsed: rows counted against the trailer
and the manifest, every file and dump re-hashed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

from dbs_admin.backups import payload, repository, sizing
from dbs_admin.backups.errors import BackupError, IntegrityCheckError, KeyMissingError, PayloadError
from dbs_admin.backups.manifest import check_against_trailer
from dbs_admin.backups.progress import Reporter
from dbs_admin.backups.sources import local_copy, ranged_reader
from dbs_admin.backups.types import Progress, ValidationResult
from dbs_admin.errors import DbsError
from dbs_admin.sealed import open_sealed, verify
from dbs_admin.sealed import read_manifest as sealed_read_manifest
from dbs_admin.sealed.errors import AuthenticationError, SealedError, UnrecoverableError
from dbs_admin.sealed.repo import Repository as SealedRepository
from dbs_admin.sealed.repo.check import local_copy as object_copy

CHECKING_BLOCKS = "checking blocks"  # both copies of every block, hashes and parity (no key)
DECRYPTING = "decrypting"  # with the key: every chunk authenticated and the contents parsed


def check_contents(stream: BinaryIO, summary: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    try:
        return _check_contents(stream, summary, Reporter(progress, None))
    except payload.MALFORMED as exc:
        raise payload.malformed(exc) from exc


def _contents_size(summary: dict[str, Any]) -> int:
    """What the decrypting pass will count: rows, plus every dump and file byte (the manifest knows them)."""
    return (sum((summary.get("counts") or {}).values()) + (sizing.listed_dump_bytes(summary) or 0)
            + sizing.listed_file_bytes(summary))


def _check_contents(stream: BinaryIO, summary: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Parse a whole payload; raise on any mismatch. Returns what was found (rows per model, files).

    Progress ("decrypting") counts rows and data bytes against the manifest's figures for both."""
    total, done = _contents_size(summary) or None, 0
    rows: dict[str, int] = {}
    files: dict[tuple[str, str], tuple[int, str]] = {}
    dump_end = None
    trailer = None
    model = None
    digest = size = None
    key: tuple[str, str] | None = None
    kind = None
    for kind_, body in payload.read_frames(stream):
        if kind_ == payload.HEAD:
            kind = payload.load_record(kind_, body).get("kind")
        elif kind_ == payload.MODEL:
            model = payload.load_record(kind_, body)["model"]
            rows.setdefault(model, 0)
        elif kind_ == payload.ROWS:
            if model is None:
                raise PayloadError("rows before their table record")
            n = len(payload.load_rows(body))
            rows[model] += n
            done += n
            reporter.report(DECRYPTING, done, total)
        elif kind_ in (payload.FILE, payload.DUMP):
            spec = payload.load_record(kind_, body)
            key = (spec.get("root"), spec.get("name")) if kind_ == payload.FILE else None
            digest, size = hashlib.sha256(), 0
        elif kind_ == payload.DATA:
            if digest is None:
                raise PayloadError("data outside a file record")
            digest.update(body)
            size += len(body)
            done += len(body)
            reporter.report(DECRYPTING, done, total)
        elif kind_ == payload.END_DATA:
            end = payload.load_record(kind_, body)
            if digest is None or end.get("size") != size or end.get("sha256") != digest.hexdigest():
                raise IntegrityCheckError(f"{'file ' + repr(key[1]) if key else 'the database dump'} does not match "
                                          "its recorded hash; the backup is damaged")
            if key is None:
                dump_end = end
            else:
                files[key] = (size, end["sha256"])
            digest = None
        elif kind_ == payload.TRAILER:
            trailer = payload.load_record(kind_, body)
    reporter.report(DECRYPTING, done, total, force=True)  # the last figures, not the last ones let through
    if trailer is None:
        raise PayloadError("the backup's contents have no trailer; the file is incomplete")
    if payload.file_index(trailer.get("files", [])) != files:
        raise IntegrityCheckError("the backup's files do not match the list it recorded")
    check_against_trailer(summary, trailer)
    if kind == "logical":
        if trailer.get("counts") != rows:
            raise IntegrityCheckError("the backup's rows do not match the counts it recorded")
        if summary.get("counts") is not None and summary["counts"] != rows:
            raise IntegrityCheckError("the backup's rows differ from the counts in its manifest")
    elif trailer.get("dump") != dump_end:
        raise IntegrityCheckError("the database dump does not match the hash recorded in the trailer")
    return {"rows": rows, "files": len(files)}


def validate_backup(
    source: str | Path, *, target: str | None = None, passphrase: str | None = None, identity: Any = None,
    decrypt: bool = False, progress: Progress | None = None,
) -> ValidationResult:
    """Check a sealed backup: structure, hashes and parity; with ``decrypt``, every chunk authenticated.

    ``progress(stage, done, total)``: "checking blocks" (blocks of both copies), then "decrypting".
    On a repository target ``source`` names a snapshot (``repository.validate_snapshot``: the same levels,
    object by object)."""
    repo_target = _repository_target(target)
    if repo_target is not None:
        return validate_snapshot(repo_target, Path(source).name, passphrase=passphrase,
                                 identity=identity, decrypt=decrypt)
    if decrypt and not passphrase and identity is None:
        raise KeyMissingError("--decrypt needs the key: a passphrase (--passphrase-file or $DBS_PASSPHRASE) or "
                              "an identity file")
    with local_copy(source, target) as path:
        reporter = Reporter(progress, None)
        report = verify(path, progress=lambda done, total: reporter.report(CHECKING_BLOCKS, done, total,
                                                                          force=done == total))
        healed = sorted(set(report.healed_blocks) | set(report.repaired_blocks))
        if not decrypt or not report.ok:
            return ValidationResult(
                ok=report.ok, decrypted=False, healed_blocks=healed,
                unrecoverable_blocks=list(report.unrecoverable_blocks), healing_margin=report.healing_margin,
                manifest=None, message=report.error or _structure_message(report), intact=report.intact,
            )
        summary = None
        try:
            with open_sealed(path, passphrase=passphrase, identity=identity) as reader:
                summary = reader.manifest
                found = check_contents(reader, summary, progress)
        except (AuthenticationError, UnrecoverableError, DbsError) as exc:
            lost = list(getattr(exc, "blocks", ()) or report.unrecoverable_blocks)
            return ValidationResult(ok=False, decrypted=False, healed_blocks=healed, unrecoverable_blocks=lost,
                                    healing_margin=report.healing_margin, manifest=summary, message=str(exc))
        except SealedError as exc:
            if exc.__class__.__name__ in ("WrongPassphraseError", "WrongIdentityError", "NoKeyError"):
                raise
            return ValidationResult(ok=False, decrypted=False, healed_blocks=healed, unrecoverable_blocks=[],
                                    healing_margin=report.healing_margin, manifest=summary, message=str(exc))
        rows = sum(found["rows"].values()) if found["rows"] else sum(summary.get("counts", {}).values())
        return ValidationResult(
            ok=True, decrypted=True, healed_blocks=healed, unrecoverable_blocks=[],
            healing_margin=report.healing_margin, manifest=summary,
            message=f"{_structure_message(report)}; decrypted and checked: {rows} rows, {found['files']} files",
            intact=report.intact,
        )


def _structure_message(report) -> str:
    """What was found, in words an operator can act on: which copies are damaged, and a cut-off end."""
    if report.intact:
        return "intact: every block of both copies verified"
    parts = [f"healed: {len(report.healed_blocks)} damaged block(s) recoverable"]
    if report.damaged_regions:
        parts.append(f"a damaged copy of the {', '.join(report.damaged_regions)}")
    if (report.regions or {}).get("locator", {}).get("copies_found") == 0:
        parts.append("the file's end is missing (truncated?): replace it with an intact copy from another target")
    return "; ".join(parts) + f"; healing margin {report.healing_margin}"


def read_manifest(source: str | Path, *, target: str | None = None, passphrase: str | None = None,
                  identity: Any = None) -> dict[str, Any]:
    """The backup's manifest summary (needs the key: the manifest is encrypted).

    Only the metadata is read (header, block table, manifest, each healed from its second copy): a backup on
    a remote target is read by ranges, a few hundred kilobytes whatever its size, never fetched whole, so the
    console's Restore… step 1 answers in about a second.
    """
    repo_target = _repository_target(target)
    if repo_target is not None:
        return repository.snapshot_manifest(repo_target, Path(source).name, passphrase=passphrase, identity=identity)
    with ranged_reader(source, target) as (f, remote):
        size = f.seek(0, os.SEEK_END)
        # A local file may be searched for metadata a damaged locator no longer points at; a remote one is not.
        return dict(sealed_read_manifest(f, size, passphrase=passphrase, identity=identity, scan_file=not remote))


def _repository_target(target: str | None) -> Any:
    """The target called ``target`` when it holds a repository (its backups are snapshots), else None."""
    if target is None:
        return None
    from dbs_admin.targets import get_target
    from dbs_admin.targets.repository import is_repository

    found = get_target(target)
    return found if is_repository(found) else None


def _keyless_objects(target: Any, name: str) -> list[str]:
    """Without the key, which packs a snapshot uses cannot be known: its record, the keys and every
    index object and pack are checked."""
    from dbs_admin.sealed.repo.check import object_names
    from dbs_admin.sealed.repo.records import SNAPSHOT_PREFIX

    return [n for n in object_names(target.store)
            if not n.startswith(SNAPSHOT_PREFIX) or n == SNAPSHOT_PREFIX + name]


def _verify_objects(store: Any, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """``(damaged but healable, {lost: why})`` of these objects, each checked like a ``.dbs`` file (no key)."""
    damaged, lost = [], {}
    for name in names:
        try:
            with object_copy(store, name) as path:
                found = verify(path)
        except (SealedError, OSError) as exc:
            lost[name] = str(exc)
            continue
        if not found.ok:
            lost[name] = found.error or "damaged beyond repair"
        elif not found.intact:
            damaged.append(name)
    return damaged, lost


def validate_snapshot(target: Any, name: str, *, passphrase: str | None = None, identity: Any = None,
                      decrypt: bool = False) -> Any:
    """Check snapshot ``name`` of a repository target; a ``ValidationResult`` (exit codes as for a file).

    Without the key: structure, block hashes and parity of every object the snapshot may need (its record,
    the keys, every index object and pack). With it (``decrypt``): the objects it does need, then every
    chunk of the snapshot decrypted and checked against its id, and the contents parsed as a file's are
    (rows counted against the trailer and the manifest, every file re-hashed), like restic's --read-data.
    A wrong key raises (exit 3) before anything is read.
    """
    if not target.exists(name):
        raise BackupError(f"target {target.name!r} holds no snapshot named {name!r}; see manage.py dbs_list")
    if decrypt and not passphrase and identity is None:
        raise KeyMissingError("checking the contents needs the key: a passphrase (--passphrase-file or "
                              "$DBS_PASSPHRASE) or an identity file")

    def result(ok: bool, message: str, damaged: list[str], decrypted: bool = False, manifest: Any = None):
        if damaged and ok:
            message += f"; damaged but healable: {', '.join(damaged)} (run python -m dbs_admin.sealed repo-heal)"
        return ValidationResult(ok=ok, decrypted=decrypted, healed_blocks=[], unrecoverable_blocks=[],
                                healing_margin=None, manifest=manifest, message=message, intact=not damaged)

    if not decrypt:
        names = _keyless_objects(target, name)
        damaged, lost = _verify_objects(target.store, names)
        if lost:
            return result(False, _lost_message(lost), damaged)
        return result(True, f"snapshot {name}: {len(names)} objects checked (structure, hashes and parity; which "
                            "packs it uses needs the key, so every pack was)", damaged)
    repo = SealedRepository.open(target.store, passphrase=passphrase, identity=identity)  # a wrong key: raised here
    try:
        names = repository.snapshot_objects(repo, name)
    except (SealedError, DbsError) as exc:
        return result(False, f"snapshot {name}: {exc}", [])
    damaged, lost = _verify_objects(target.store, names)
    if lost:
        return result(False, _lost_message(lost), damaged)
    manifest = None
    try:
        with repository.SnapshotReader(repo, name) as reader:
            manifest = reader.manifest
            found = check_contents(reader, manifest)
    except (SealedError, DbsError) as exc:
        return result(False, f"snapshot {name}: {exc}", damaged, manifest=manifest)
    rows = sum(found["rows"].values()) if found["rows"] else sum(manifest.get("counts", {}).values())
    return result(True, f"snapshot {name}: {len(names)} objects checked; every chunk decrypted and checked: "
                        f"{rows} rows, {found['files']} files", damaged, decrypted=True, manifest=manifest)


def _lost_message(lost: dict[str, str]) -> str:
    first = list(lost.items())[:5]
    return (f"{len(lost)} repository object(s) damaged beyond repair: "
            + "; ".join(f"{name}: {why}" for name, why in first))
