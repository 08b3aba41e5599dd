"""The manifest summary stored in the sealed container, and the migration-state comparison.

Why most of it is computed up front: it is what ``read_manifest`` and the
console show without reading the whole payload, and it holds what can be
known inside the snapshot (counts by COUNT in the same transaction, the
migration state, versions). The list of files with their sha256 is known
only once the last file has streamed: the capture completes it then (the
container stores the manifest after the last payload byte), and it equals
the payload trailer's list, which readers check (:func:`check_against_trailer`).
"""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Mapping
from datetime import datetime
from importlib import metadata
from typing import Any

import django
from django.apps import apps
from django.db.migrations.loader import MigrationLoader

from dbs_admin.backups.errors import IntegrityCheckError, MigrationMismatchError
from dbs_admin.backups.payload import file_index
from dbs_admin.version import __version__

MANIFEST_FORMAT = 1


def migration_state(connection) -> list[list[str]]:
    """Applied migrations as ``[app, name]`` pairs, sorted (squashes marked applied as Django does)."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    return sorted([app, name] for app, name in loader.applied_migrations)


def _code_migrations(connection) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    nodes = set(loader.graph.nodes)
    replaced = {key for migration in loader.replacements.values() for key in migration.replaces}
    return nodes, replaced


def compare_migrations(recorded: list[list[str]], connection) -> tuple[list[str], list[str]]:
    """``(only_in_backup, only_in_code)`` as ``app.name`` strings."""
    nodes, replaced = _code_migrations(connection)
    backup = {(a, n) for a, n in recorded} - replaced
    code = nodes - replaced
    fmt = lambda keys: sorted(f"{a}.{n}" for a, n in keys)  # noqa: E731
    return fmt(backup - code), fmt(code - backup)


def check_migrations(recorded: list[list[str]], connection) -> None:
    only_in_backup, only_in_code = compare_migrations(recorded, connection)
    if only_in_backup or only_in_code:
        parts = []
        if only_in_backup:
            parts.append("applied in the backup but not in this code: " + ", ".join(only_in_backup[:20]))
        if only_in_code:
            parts.append("in this code but not applied in the backup: " + ", ".join(only_in_code[:20]))
        raise MigrationMismatchError(
            "the backup's migration state differs from the code's (" + "; ".join(parts) + "). Check out the code "
            "the backup was made with, or pass --allow-migration-mismatch to restore the matching columns anyway.",
            only_in_backup=only_in_backup,
            only_in_code=only_in_code,
        )


def unapplied_in_database(connection) -> list[str]:
    """Migrations of the code not applied in the database about to receive rows."""
    nodes, replaced = _code_migrations(connection)
    applied = {tuple(k) for k in migration_state(connection)}
    return sorted(f"{a}.{n}" for a, n in (nodes - replaced - applied))


def versions() -> dict[str, Any]:
    """Django, dbs_admin, Python, and the distribution version of every installed app when known."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, Any]:
    """Versions are read from each app's package ``__version__`` (scanning every installed
    distribution's metadata would take about a second per process)."""
    app_versions: dict[str, str | None] = {}
    for config in apps.get_app_configs():
        top = sys.modules.get(config.name.split(".", 1)[0])
        version = getattr(top, "__version__", None)
        if version is None and config.name.startswith("django."):
            version = django.get_version()
        if version is None:
            try:
                version = metadata.version(config.name.split(".", 1)[0].replace("_", "-"))
            except metadata.PackageNotFoundError:
                version = None
        app_versions[config.label] = str(version) if version is not None else None
    return {
        "django": django.get_version(),
        "dbs_admin": __version__,
        "python": platform.python_version(),
        "platform": sys.platform,
        "apps": app_versions,
    }


def summary(
    *, kind: str, engine: str, label: str, created_at: datetime, counts: dict[str, int], migrations: list,
    files: int, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "engine": engine,
        "label": label,
        "created_at": created_at.isoformat(),
        **counted(counts, migrations),
        "files": files,
        "versions": versions(),
        **(extra or {}),
    }


def counted(counts: dict[str, int], migrations: list) -> dict[str, Any]:
    """The manifest's keys read inside the snapshot: rows per model, their total, the applied migrations.

    Apart from ``summary`` because a native backup reads them after its dump (``create._count_in_snapshot``).
    """
    return {"counts": counts, "rows": sum(counts.values()), "migrations": migrations}


def check_against_trailer(summary: Mapping[str, Any] | None, trailer: Mapping[str, Any]) -> None:
    """What the manifest records at the end (``file_sha256``, a native ``dump``) must equal the payload's trailer.

    Both are written by the same capture; a difference means the file was not
    written by dbs_admin as it claims, and a restore must not trust either.
    Backups made before these keys existed lack them and pass.
    """
    summary = summary or {}
    listed = summary.get("file_sha256")
    if listed is not None and file_index(listed) != file_index(trailer.get("files", [])):
        raise IntegrityCheckError("the backup's files differ from the list and hashes in its manifest")
    if "dump" in summary and summary["dump"] != trailer.get("dump"):
        raise IntegrityCheckError("the backup's database dump differs from the hash in its manifest")
