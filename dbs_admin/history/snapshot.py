"""The worker side: turn a captured state into a stored version and its index row.

The web process captures the committed state in the saving transaction
(``signals``) and sends it as a plain-JSON payload with its order key; here
the images are read and hashed, the object's folder is locked, the state is
put at its place in commit order and compared with the version before it (no
change, no version), and the version and its index row are written. The
object itself is never read here.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from django.db import models

from dbs_admin.conf import dbs_settings
from dbs_admin.history import index, markdown, ordering
from dbs_admin.history.collect import (
    ImageFile,
    collect_images,
    ignored_in_compare,
    model_for_label,
    model_label,
    options_for,
)
from dbs_admin.history.errors import VersionNotFoundError
from dbs_admin.history.store import INITIAL, META, ObjectHistory, VersionTaken, saved_at, update_id, version_time
from dbs_admin.models import HistoryVersion

logger = logging.getLogger("dbs_admin.history")


def history_root() -> Path:
    return Path(dbs_settings.HISTORY_ROOT)


def object_history(model: type[models.Model], key: str) -> ObjectHistory:
    """The history of the object whose key (slug or pk) is ``key``."""
    return ObjectHistory(history_root(), model_label(model), key, model._meta.model_name)


def history_in_folder(model: type[models.Model], folder: str) -> ObjectHistory:
    """The history in ``<root>/<label>/<folder>``; ``folder`` must be one plain path segment (URLs pass it)."""
    if not folder or folder.startswith(".") or "/" in folder or "\\" in folder:
        raise VersionNotFoundError(f"{folder!r} is not the folder of an object in the history tree.")
    return ObjectHistory.from_folder(history_root(), model_label(model), folder, model._meta.model_name)


def resolve_history(model: type[models.Model], pk: Any, data: dict[str, Any]) -> ObjectHistory:
    """The folder this object's versions go to.

    An object keeps the folder it started in even when its slug changes later
    (found through the index by primary key); a new object gets a folder named
    by its key field, or its primary key when that is empty.
    """
    folder = (
        HistoryVersion.objects.filter(model_label=model_label(model), object_pk=str(pk), object_deleted=False)
        .order_by("-created_at").values_list("object_key", flat=True).first()
    )
    if folder:
        return history_in_folder(model, folder)
    key = data.get(options_for(model).key_field) or pk
    return object_history(model, str(key))


def make_payload(
    model: type[models.Model], pk: Any, data: dict[str, Any], *, user: Any = None,
    restored_from: str | None = None, deleted: bool = False, saved_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """What the web process sends to the worker: plain JSON, no model instances."""
    return {
        "model": model_label(model),
        "pk": str(pk),
        "data": data,
        "user_id": getattr(user, "pk", None),
        "username": user.get_username() if user is not None else "",
        "saved_at": (saved_at or dt.datetime.now(dt.UTC)).isoformat(),
        "restored_from": restored_from,
        "deleted": deleted,
    }


def _image_set(entries: list[dict[str, Any]] | list[ImageFile]) -> dict[str, str | None]:
    return {
        (e["name"] if isinstance(e, dict) else e.name): (e["sha256"] if isinstance(e, dict) else e.sha256)
        for e in entries
    }


def summarize(
    model: type[models.Model], before: dict[str, Any] | None, data: dict[str, Any], images: list[ImageFile]
) -> dict[str, Any]:
    """What changed against the previous version: field names, related names +/-, images +/-/changed."""
    new_images = _image_set(images)
    if before is None:
        return {"created": True, "fields": [], "m2m": {}, "images": {"added": sorted(new_images)}}
    ignored = ignored_in_compare(model) | {META, "images"}
    m2m_names = {f.name for f in model._meta.many_to_many}
    fields = [k for k in data if k not in ignored and k not in m2m_names and data.get(k) != before.get(k)]
    m2m = {}
    for name in m2m_names & set(data):
        old, new = set(before.get(name) or []), set(data.get(name) or [])
        if old != new:
            m2m[name] = {"added": sorted(new - old), "removed": sorted(old - new)}
    old_images = _image_set(before.get("images") or [])
    image_diff = {
        "added": sorted(set(new_images) - set(old_images)),
        "removed": sorted(set(old_images) - set(new_images)),
        "changed": sorted(n for n in set(new_images) & set(old_images) if new_images[n] != old_images[n]),
    }
    return {"created": False, "fields": fields, "m2m": m2m, "images": {k: v for k, v in image_diff.items() if v}}


def describe_summary(summary: dict[str, Any]) -> str:
    """A one-line "what changed" of a version summary (history lists, CLI)."""
    if summary.get("baseline"):
        return "original (the state before its first tracked change)"
    parts = ["created"] if summary.get("created") else list(summary.get("fields") or [])
    for name, delta in (summary.get("m2m") or {}).items():
        parts += [f"{name} +{v}" for v in delta.get("added", [])] + [f"{name} -{v}" for v in delta.get("removed", [])]
    images = summary.get("images") or {}
    if not summary.get("created"):
        parts += [f"image +{n}" for n in images.get("added", [])]
    parts += [f"image -{n}" for n in images.get("removed", [])] + [f"image ~{n}" for n in images.get("changed", [])]
    if summary.get("restored_from"):
        parts.append(f"restored from {summary['restored_from']}")
    if summary.get("imported_from"):
        parts.append(f"imported from {summary['imported_from']}")
    return ", ".join(parts) or "no change"


def is_unchanged(summary: dict[str, Any]) -> bool:
    return not summary["created"] and not summary["fields"] and not summary["m2m"] and not summary["images"]


def take_snapshot(payload: dict[str, Any], *, now: dt.datetime | None = None) -> str | None:
    """Store the payload's state as a version unless it equals a neighbour in order; returns the version id.

    Versions are ordered by their order key (drawn from the database while the
    saving transaction held the row: commit order; ``saved_at`` for versions
    written before keys existed), not by when a worker got to them: with
    several workers, a snapshot can reach the tree after a later one. It is
    then inserted at its place (and the next version's summary refreshed), or,
    for a creation that arrived late, swapped into the first version's place.
    A deletion or a recovery is committed to git like a version. ``now``
    forces the version time (tests).
    """
    model = model_for_label(payload["model"])
    history = resolve_history(model, payload["pk"], payload["data"])
    images = collect_images(model, payload["data"])
    with history.lock():
        for attempt in range(PLACE_ATTEMPTS):
            try:
                version_id, marked = _place(history, model, payload, images, now)
                break
            except VersionTaken:  # another process wrote that name first (no working lock): look again
                if attempt == PLACE_ATTEMPTS - 1:
                    raise
        index.reconcile(history)  # every version on disk has its row, whatever happened before
    if version_id:
        logger.info("history: %s %s -> %s", payload["model"], history.key, version_id)
        _after_write(history, version_id)
    if marked:
        _after_mark(history, marked, payload.get("username", ""))
    return version_id


PLACE_ATTEMPTS = 5


def _place(history: ObjectHistory, model, payload: dict[str, Any], images: list[ImageFile],
           now: dt.datetime | None) -> tuple[str | None, str | None]:
    """Write the version at its place in order (unless a neighbour already holds this state); mark a deletion
    or recovery. Returns ``(version id or None, "deleted" | "recovered" | None)``."""
    options = options_for(model)
    data = dict(payload["data"])
    when = _parse_time(payload.get("saved_at")) or dt.datetime.now(dt.UTC)
    ids = history.versions()
    position, documents = _position(history, ids, when, ordering.key(payload))
    before = documents.get(ids[position - 1]) if position else None
    inherited = _fill_inherited(payload, data, before)
    summary = summarize(model, before, data, images)
    if payload.get("baseline") and before is None:
        summary["baseline"] = True
    if payload.get("restored_from"):
        summary["restored_from"] = payload["restored_from"]
    following = documents.get(ids[position]) if position < len(ids) else None
    version_id = marked = None
    if not is_unchanged(summary) and not _already_next(model, following, data, images):
        meta = {**_meta(history, options, payload, data, summary), "inherited": inherited}
        if position == len(ids):
            version_id = _append(history, options, data, images, meta, now or when)
        elif position == 0:
            version_id = _swap_initial(history, model, options, data, images, meta, ids, documents)
        else:
            version_id = _insert(history, model, options, data, images, meta, ids, position, when)
    if payload.get("deleted"):
        history.mark_deleted({"pk": payload["pk"], "deleted_at": payload["saved_at"],
                              "user_id": payload.get("user_id"), "username": payload.get("username", "")})
        index.mark_deleted(history, True)
        marked = "deleted"
    elif history.deleted_info() is not None and position == len(ids):
        history.clear_deleted()
        index.mark_deleted(history, False)
        marked = "recovered"
    return version_id, marked


def _already_next(model, following: dict[str, Any] | None, data: dict[str, Any], images: list[ImageFile]) -> bool:
    """The version right after this one holds the same state: nothing to insert (a late duplicate, or a
    baseline that reached the worker after the first version it equals)."""
    if following is None:
        return False
    return is_unchanged(summarize(model, following, data, images))


def _fill_inherited(payload: dict[str, Any], data: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """Many-to-many fields the transaction did not touch: the same as in the version before (in commit order).

    Without a version before (the creation has not reached the worker yet, or the tree lost the object's
    folder), they are recorded as empty but still marked inherited: when the creation arrives late it is
    put first and passes its values on (``_refresh_following``). The object is never read here, so a
    version holds only what its transaction committed.
    """
    names = [n for n in payload.get("inherit") or [] if n not in data]
    if not names:
        return []
    if before is None:
        logger.info("history: %s %s has no version yet to take %s from; empty until one arrives before it",
                    payload["model"], payload["pk"], ", ".join(names))
        data.update({n: [] for n in names})
        return names
    for name in names:
        data[name] = list(before.get(name) or [])
    return names


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    when = dt.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _belongs_after(document: dict[str, Any], when: dt.datetime, order: tuple[int, int] | None) -> bool:
    """Does the stored version come after a state with this order key (or, without keys, this commit time)?"""
    stored_order = ordering.key(document.get(META) or {})
    if stored_order is not None and order is not None:
        return stored_order > order
    stored = saved_at(document)
    return stored is not None and stored > when


def _position(history: ObjectHistory, ids: list[str], when: dt.datetime,
              order: tuple[int, int] | None = None) -> tuple[int, dict[str, dict]]:
    """Where a state belongs: after every version that does not come after it (newest first)."""
    documents: dict[str, dict] = {}
    position = len(ids)
    while position > 0:
        document = history.read(ids[position - 1])
        documents[ids[position - 1]] = document
        if not _belongs_after(document, when, order):
            break
        position -= 1
    return position, documents


def _meta(history, options, payload, data, summary) -> dict[str, Any]:
    return {
        "model": payload["model"], "pk": payload["pk"], "key": history.key, "key_field": options.key_field,
        "title": str(data.get("title") or data.get(options.key_field) or payload["pk"])[:300],
        "saved_at": payload["saved_at"], "written_at": dt.datetime.now(dt.UTC).isoformat(),
        "order": payload.get("order"),
        "user_id": payload.get("user_id"), "username": payload.get("username", ""), "summary": summary,
    }


def _append(history, options, data, images, meta, when) -> str:
    version_id = history.next_version_id(when)
    text = markdown.render(options, data, [i.name for i in images], version_id)
    version_id, _entries = history.write_version(data, images, meta, text, now=when, version_id=version_id)
    index.record(history, version_id, history.read(version_id))
    return version_id


def _free_id_between(history: ObjectHistory, when: dt.datetime, after: str | None, before: str | None) -> str | None:
    """An update name that sorts after ``after`` and before ``before``: at ``when`` if that lies between them,
    else just after ``after`` (a clock that was off must not move a version out of its order)."""
    low = version_time(after) if after else None
    high = version_time(before) if before else None
    candidate = when if low is None or when > low else low + dt.timedelta(microseconds=1)
    if high is not None and candidate >= high:
        candidate = low + dt.timedelta(microseconds=1) if low is not None else high - dt.timedelta(microseconds=1)
    while history.version_dir(update_id(candidate)).exists():
        candidate += dt.timedelta(microseconds=1)
    return update_id(candidate) if high is None or candidate < high else None


def _insert(history, model, options, data, images, meta, ids, position, when) -> str:
    version_id = _free_id_between(history, when, ids[position - 1] if position > 1 else None, ids[position])
    if version_id is None:  # no free name in between (same microsecond): keep it, at the end
        return _append(history, options, data, images, meta, when)
    text = markdown.render(options, data, [i.name for i in images], version_id)
    history.write_version(data, images, meta, text, now=when, version_id=version_id)
    inserted = history.read(version_id)
    index.record(history, version_id, inserted)
    _refresh_following(history, model, options, ids[position:], inserted)
    return version_id


def _refresh_following(history: ObjectHistory, model, options, following: list[str], before: dict[str, Any]) -> None:
    """After an insertion: recompute what the next version changed, and pass on tags it had inherited.

    A version whose tags were inherited from "the version before" gets the
    inserted version's tags; the change ripples on while versions inherit.
    """
    for version_id in following:
        document = history.read(version_id)
        meta = document.setdefault(META, {})
        changed = False
        for name in meta.get("inherited") or []:
            if document.get(name) != before.get(name):
                document[name] = list(before.get(name) or [])
                changed = True
        fields = {k: v for k, v in document.items() if k not in (META, "images")}
        old = meta.get("summary") or {}
        summary = summarize(model, before, fields, document.get("images") or [])
        for flag in ("restored_from", "imported_from"):
            if old.get(flag):
                summary[flag] = old[flag]
        meta["summary"] = summary
        history.rewrite_json(version_id, document)
        if changed:
            names = [i["name"] for i in document.get("images") or []]
            history.rewrite_markdown(version_id, markdown.render(options, fields, names, version_id))
        HistoryVersion.objects.filter(model_label=history.label, object_key=history.dir.name,
                                      version_id=version_id).update(summary=summary)
        if not changed:
            return
        before = document


def _swap_initial(history, model, options, data, images, meta, ids, documents) -> str:
    """A creation reached the worker after later snapshots: it becomes the first version, the old one an update."""
    old = documents.get(INITIAL) or history.read(INITIAL)
    old_time = saved_at(old) or dt.datetime.now(dt.UTC)
    moved_id = _free_id_between(history, old_time, None, ids[1] if len(ids) > 1 else None)
    if moved_id is None:
        return _append(history, options, data, images, meta, old_time)
    old_fields = {k: v for k, v in old.items() if k not in (META, "images")}
    old_text = markdown.render(options, old_fields, [i["name"] for i in old.get("images") or []], moved_id)
    history.copy_as_update(old, old_text, moved_id)
    history.replace_initial(data, images, meta, markdown.render(options, data, [i.name for i in images], INITIAL))
    first = history.read(INITIAL)
    HistoryVersion.objects.filter(model_label=history.label, object_key=history.dir.name,
                                  version_id=INITIAL).delete()
    index.record(history, INITIAL, first)
    index.record(history, moved_id, history.read(moved_id))
    _refresh_following(history, model, options, [moved_id, *ids[1:]], first)  # the ripple goes on past it
    return INITIAL


def _after_write(history: ObjectHistory, version_id: str) -> None:
    """Commit the new version to git when HISTORY_GIT_REMOTE is set (never fails the snapshot)."""
    from dbs_admin.history import gitstore

    gitstore.commit_version(history, version_id)


def _after_mark(history: ObjectHistory, what: str, username: str) -> None:
    """Commit a deletion (``deleted.json``) or a recovery (its removal) to git like a version."""
    from dbs_admin.history import gitstore

    gitstore.commit_change(history, what, username)
