"""The ``HistoryVersion`` rows: a fast, rebuildable index of the tree.

The admin lists versions and deleted objects from this table (paginated, with
indexes) instead of walking the disk; ``reindex()`` rebuilds it from the tree,
which stays the source of truth.

The unique constraint (one row per object folder and version name) must
never make a version on disk go missing from the index: :func:`record`
updates a row that is already there (another process got to it first, or a
stale row) from what is on disk, and :func:`reconcile` adds the row of any
version on disk that has none (a worker that died between the two writes).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from dbs_admin.history.store import INITIAL, META, ObjectHistory, iter_objects, version_time
from dbs_admin.models import HistoryVersion


def _user_id(user_id: Any) -> Any:
    if user_id is None:
        return None
    return user_id if get_user_model()._default_manager.filter(pk=user_id).exists() else None


def version_created_at(version_id: str, meta: dict[str, Any]) -> dt.datetime:
    """When a version was committed: its folder name for updates, the recorded commit time for the initial one."""
    when = version_time(version_id)
    if when is None:
        when = parse_datetime(meta.get("saved_at") or meta.get("written_at") or "") or dt.datetime.now(dt.UTC)
    return when


def row_for(history: ObjectHistory, version_id: str, document: dict[str, Any], deleted: bool) -> HistoryVersion:
    meta = document.get(META, {})
    return HistoryVersion(
        model_label=history.label,
        object_key=history.dir.name,
        object_pk=str(meta.get("pk") or ""),
        version_id=version_id,
        path=history.relative_path(version_id),
        created_at=version_created_at(version_id, meta),
        user_id=_user_id(meta.get("user_id")),
        username=(meta.get("username") or "")[:150],
        title=(meta.get("title") or "")[:300],
        summary=meta.get("summary") or {},
        object_deleted=deleted,
    )


def record(history: ObjectHistory, version_id: str, document: dict[str, Any]) -> HistoryVersion:
    """The row of a version just written: inserted, or the existing row of that name brought up to date."""
    row = row_for(history, version_id, document, deleted=history.deleted_info() is not None)
    try:
        with transaction.atomic():  # a savepoint: PostgreSQL's transaction survives the failed insert
            row.save(force_insert=True)
        return row
    except IntegrityError:
        pass
    fields = {f.attname: getattr(row, f.attname) for f in HistoryVersion._meta.concrete_fields if not f.primary_key}
    HistoryVersion.objects.filter(model_label=row.model_label, object_key=row.object_key,
                                  version_id=version_id).update(**fields)
    return HistoryVersion.objects.get(model_label=row.model_label, object_key=row.object_key, version_id=version_id)


def reconcile(history: ObjectHistory) -> int:
    """Add the rows of versions on disk that the index lacks; returns how many (the caller holds the lock)."""
    known = set(HistoryVersion.objects.filter(model_label=history.label, object_key=history.dir.name)
                .values_list("version_id", flat=True))
    missing = [v for v in history.versions() if v not in known]
    for version_id in missing:
        record(history, version_id, history.read(version_id))
    return len(missing)


def mark_deleted(history: ObjectHistory, deleted: bool) -> int:
    return HistoryVersion.objects.filter(model_label=history.label, object_key=history.dir.name).update(
        object_deleted=deleted
    )


def reindex(root: Path | str, basenames: dict[str, str], batch_size: int = 500) -> int:
    """Rebuild every row from the tree; ``basenames`` maps a model label to its json base name."""
    rows: list[HistoryVersion] = []
    for label, folder, _path in iter_objects(root):
        basename = basenames.get(label)
        if basename is None:
            continue
        history = ObjectHistory.from_folder(root, label, folder, basename)
        deleted = history.deleted_info() is not None
        for version_id in history.versions():
            rows.append(row_for(history, version_id, history.read(version_id), deleted))
    with transaction.atomic():
        HistoryVersion.objects.filter(model_label__in=list(basenames)).delete()
        HistoryVersion.objects.bulk_create(rows, batch_size=batch_size)
    return len(rows)


__all__ = ["INITIAL", "mark_deleted", "reconcile", "record", "reindex", "row_for"]
