"""Signals of tracked models -> one snapshot per object per transaction, sent after the commit.

Why it works this way:

* ``transaction.on_commit``: a rolled-back save leaves no snapshot, and the
  callback runs after *everything* in the transaction, including the admin's
  ``save_related`` that sets a new post's tags, so a new post's first version
  already has its tags (no time windows).
* One callback per object and transaction: a save plus three tag changes is
  one snapshot of the final state. The fields are taken from memory at each
  save (the last save wins); the tags are read at commit time only if the
  transaction changed them (or created the object). Otherwise they are the
  tags of the version before, which the worker fills in (in commit order,
  see ``snapshot``), so a plain save costs no query at all.
* Capture in the web process, write in a worker: the payload carries the
  committed state, so a slow or busy worker can never make two saves collapse
  into one version, and a plain save pays for one broker message.
* ``pre_delete`` captures the state while the row (and its tags) still exist;
  the worker stores it if it is new and marks the object deleted, so it shows
  up under *Recover deleted*.
* Receivers are connected per tracked model, never globally: a global
  ``pre_delete`` receiver would turn off Django's fast deletes for every model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, models, router, transaction
from django.db.models.signals import m2m_changed, post_save, pre_delete

from dbs_admin.history import collect, context
from dbs_admin.history.snapshot import make_payload
from dbs_admin.registry import registry
from dbs_admin.suspend import history_is_suspended

logger = logging.getLogger("dbs_admin.history")


def connect_signals() -> None:
    """Connect the receivers of every model passed to ``track_history`` (idempotent)."""
    for model in list(registry.history):
        uid = f"dbs_history:{model._meta.label}"
        post_save.connect(_on_save, sender=model, dispatch_uid=uid)
        pre_delete.connect(_on_delete, sender=model, dispatch_uid=uid)
        for field in model._meta.many_to_many:
            m2m_changed.connect(_on_m2m, sender=field.remote_field.through, dispatch_uid=f"{uid}:{field.name}")


def disconnect_signals() -> None:
    """Undo :func:`connect_signals` (benchmarks measure saves with history off)."""
    for model in list(registry.history):
        uid = f"dbs_history:{model._meta.label}"
        post_save.disconnect(sender=model, dispatch_uid=uid)
        pre_delete.disconnect(sender=model, dispatch_uid=uid)
        for field in model._meta.many_to_many:
            m2m_changed.disconnect(sender=field.remote_field.through, dispatch_uid=f"{uid}:{field.name}")


def _on_save(sender: type[models.Model], instance: models.Model, raw: bool = False, using: str | None = None,
             **kwargs: Any) -> None:
    if raw or history_is_suspended():
        return
    # The fields as this save wrote them, from memory (no query): the snapshot is the last save's state.
    # A save(update_fields=...) wrote only some of them; the others may be stale in memory: read the row.
    if kwargs.get("update_fields"):
        schedule(sender, instance.pk, using=using, read_row=True)
    else:
        schedule(sender, instance.pk, using=using, fields=collect.capture_fields(instance),
                 read_m2m=bool(kwargs.get("created")))


def _on_m2m(sender: Any, instance: models.Model, action: str, reverse: bool, model: type[models.Model],
            pk_set: set | None, using: str | None = None, **kwargs: Any) -> None:
    if history_is_suspended() or action not in {"post_add", "post_remove", "post_clear", "pre_clear"}:
        return
    if not reverse:
        if action != "pre_clear" and registry.history_for(type(instance)):
            schedule(type(instance), instance.pk, using=using, read_m2m=True)
        return
    # Reverse side (tag.posts.add(post)): the tracked objects are the ones in pk_set.
    if registry.history_for(model) is None:
        return
    if action == "pre_clear":
        field = next(f for f in model._meta.many_to_many if f.remote_field.through is sender)
        pk_set = set(model._default_manager.using(using).filter(**{field.name: instance}).values_list("pk", flat=True))
    elif action == "post_clear":
        return
    for pk in pk_set or ():
        schedule(model, pk, using=using, read_m2m=True)


def _on_delete(sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any) -> None:
    if history_is_suspended():
        return
    try:
        data = collect.capture_instance(instance)
    except Exception:  # noqa: BLE001 - a snapshot must never block a delete
        logger.exception("history: could not capture %s %s before delete", sender._meta.label, instance.pk)
        return
    payload = make_payload(sender, instance.pk, data, user=context.current_user(), deleted=True)
    using = using or router.db_for_write(sender) or DEFAULT_DB_ALIAS
    pending = transaction.get_connection(using).__dict__.get("_dbs_history_pending", {})
    if (state := pending.get((collect.model_label(sender), str(instance.pk)))) is not None:
        state["cancelled"] = True  # a save earlier in this transaction: the delete's capture supersedes it
    transaction.on_commit(lambda: send(payload), using=using)


def schedule(model: type[models.Model], pk: Any, *, using: str | None = None,
             fields: dict[str, Any] | None = None, read_m2m: bool = False, read_row: bool = False) -> None:
    """Snapshot ``model`` ``pk`` after the current transaction commits (once per transaction).

    ``fields`` are the values a save just wrote; without them (a tag change
    only, or ``read_row`` after a partial save) the row is read at commit time. The many-to-many names are read at
    commit time only when the transaction changed them (or created the
    object); otherwise they are unchanged since the version before, and the
    worker takes them from it, so a plain save costs no query at all.
    """
    using = using or router.db_for_write(model) or DEFAULT_DB_ALIAS
    connection = transaction.get_connection(using)
    key = (collect.model_label(model), str(pk))
    pending = connection.__dict__.setdefault("_dbs_history_pending", {})
    state = pending.get(key)
    # The callback is gone when a rollback discarded it (or it already ran): schedule a new one.
    if state is not None and any(item[1] is state["flush"] for item in connection.run_on_commit):
        if fields is not None or read_row:
            state["fields"] = fields  # the last save decides (None: read the row at commit)
        state["read_m2m"] = state["read_m2m"] or read_m2m or state["fields"] is None
        return
    state = {"fields": fields, "read_m2m": read_m2m or fields is None, "user": context.current_user(),
             "restored_from": context.current_restore()}

    def flush() -> None:
        pending.pop(key, None)
        if state.get("cancelled"):
            return
        flush_snapshot(model, pk, fields=state["fields"], read_m2m=state["read_m2m"], user=state["user"],
                       restored_from=state["restored_from"], using=using)

    state["flush"] = flush
    pending[key] = state
    transaction.on_commit(flush, using=using)


def flush_snapshot(model: type[models.Model], pk: Any, *, fields: dict[str, Any] | None = None,
                   read_m2m: bool = True, user: Any = None, restored_from: str | None = None,
                   using: str | None = None) -> None:
    """Capture the committed state and hand it to a worker (inline if the broker is unreachable)."""
    saved_at = dt.datetime.now(dt.UTC)
    if fields is None:
        manager = model._default_manager.db_manager(using) if using else model._default_manager
        fks = [f.name for f in collect.tracked_fields(model) if f.is_relation]
        obj = manager.select_related(*fks).filter(pk=pk).first()
        if obj is None:  # deleted later in the same transaction: the delete handler took care of it
            return
        fields = collect.capture_fields(obj)
    if read_m2m:
        data, inherit = {**fields, **collect.capture_m2m(model, pk, using=using)}, []
    else:
        data, inherit = dict(fields), [f.name for f in collect.tracked_m2m(model)]
    payload = make_payload(model, pk, data, user=user, restored_from=restored_from, saved_at=saved_at)
    payload["inherit"] = inherit
    send(payload)


_snapshot_sender: Callable[[dict[str, Any]], None] | None = None


def set_snapshot_sender(sender: Callable[[dict[str, Any]], None] | None) -> None:
    """Register how a captured snapshot reaches a worker (the jobs layer sends a Celery task).

    Why a hook: this service must not import the jobs layer above it. Without a
    sender (or when it fails: the broker is down) the version is written inline.
    """
    global _snapshot_sender
    _snapshot_sender = sender


def send(payload: dict[str, Any]) -> None:
    sender = _snapshot_sender
    if sender is not None:
        try:
            sender(payload)
            return
        except Exception:  # noqa: BLE001 - the broker is down: never lose what the editor wrote
            logger.warning("history: broker unreachable, writing %s %s inline", payload["model"], payload["pk"],
                           exc_info=True)
    from dbs_admin.history.snapshot import take_snapshot

    take_snapshot(json.loads(json.dumps(payload)))  # exactly what a worker would have received
