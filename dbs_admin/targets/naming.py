"""File names of sealed backups: ``dbs-<UTC timestamp>Z-<kind>[-<label>].dbs``.

Why the date lives in the name: a copy's mtime changes when it is uploaded,
restored from tape or rsynced, so listing and retention date a backup by its
name, which is the same on every target. Microseconds keep two backups taken
in the same second apart, and the fixed-width UTC stamp makes names sort in
time order.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.utils.text import slugify

SUFFIX = ".dbs"
_STAMP = "%Y%m%dT%H%M%S%f"
_LABEL_MAX = 60
_NAME_RE = re.compile(r"^dbs-(?P<stamp>\d{8}T\d{12})Z-(?P<kind>[a-z][a-z0-9]*)(?:-(?P<label>[a-z0-9_-]+))?\.dbs$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9]*$")


def label_slug(label: str) -> str:
    """The label as it appears in file names: lower-case ASCII, digits, ``-`` and ``_``, at most 60 characters."""
    return slugify(label)[:_LABEL_MAX].strip("-_")


def backup_file_name(created_at: datetime, kind: str, label: str = "") -> str:
    """The file name of a backup created at ``created_at`` (aware) of ``kind`` ("logical", "native")."""
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware (use django.utils.timezone.now())")
    if not _KIND_RE.fullmatch(kind):
        raise ValueError(f"backup kind {kind!r} must be lower-case letters and digits, e.g. 'logical'")
    stamp = created_at.astimezone(UTC).strftime(_STAMP)
    slug = label_slug(label)
    return f"dbs-{stamp}Z-{kind}{'-' + slug if slug else ''}{SUFFIX}"


def parse_backup_file_name(name: str) -> tuple[datetime, str, str] | None:
    """``(created_at UTC, kind, label slug)`` of a name made by :func:`backup_file_name`, else None."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    try:
        created_at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    except ValueError:  # 20261399T..., digits that are not a date
        return None
    return created_at, match["kind"], match["label"] or ""
