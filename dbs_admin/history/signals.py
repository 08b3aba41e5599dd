"""Signals of tracked models -> one version per object per transaction, captured in it, sent after the commit.

Why it works this way:

* **Captured inside the transaction, sent at its commit.** The fields come
  from memory at each save (the last save wins; a ``save(update_fields=...)``
  reads the row, since the other fields in memory may be stale); the related
  names (tags) are read right after each change of them, in the transaction.
  The on-commit callback only serializes what was captured and hands it to a
  worker, which writes it and never reads the object: each version is exactly
  the state that transaction committed, however late the worker runs.
* **Ordered by the database.** At the transaction's first write of the
  object (the UPDATE; or, for a tag change, after locking the row with
  ``SELECT ... FOR UPDATE``) a key is drawn from the database
  (``ordering.draw``). A concurrent save of the same object waits for that
  row until this transaction commits, so its key is larger: versions are
  ordered by commit, not by any host's clock.
* **The original is never lost.** Before the first tracked write of an
  object that has no version yet (it existed before history was tracked),
  its state is read from the database and stored first, as its initial
  version (the key's ``sub`` 0 puts it right before the change).
* ``transaction.on_commit``: a rolled-back save leaves no version, and the
  callback runs after *everything* in the transaction, including the admin's
  ``save_related`` that sets a new post's tags.
* One callback per object and transaction: a save plus three tag changes is
  one version of the final state. Tags a transaction did not touch are those
  of the version before, which the worker fills in (in order, from the tree).
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

from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from dbs_admin.conf import dbs_settings
from dbs_admin.history import collect, context, ordering
from dbs_admin.history.snapshot import make_payload
from dbs_admin.models import HistoryVersion
from dbs_admin.registry import registry
from dbs_admin.suspend import history_is_suspended

logger = logging.getLogger("dbs_admin.history")

PENDING = "_dbs_history_pending"  # per connection: (label, pk) -> the transaction's capture of that object
BEFORE = "_dbs_history_before"  # per connection: (label, pk) -> state read before a first write (baseline)
CLEARING = "_dbs_history_clearing"  # per connection: objects a reverse clear() is about to untag


def connect_signals() -> None:
    """Connect the receivers of every model passed to ``track_history`` (idempotent)."""
    for model in list(registry.history):
        uid = f"dbs_history:{model._meta.label}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=uid)
        post_save.connect(_on_save, sender=model, dispatch_uid=uid)
        pre_delete.connect(_before_delete, sender=model, dispatch_uid=uid)
        post_delete.connect(_on_delete, sender=model, dispatch_uid=uid)
        for field in model._meta.many_to_many:
            m2m_changed.connect(_on_m2m, sender=field.remote_field.through, dispatch_uid=f"{uid}:{field.name}")


def disconnect_signals() -> None:
    """Undo :func:`connect_signals` (benchmarks measure saves with history off)."""
    for model in list(registry.history):
        uid = f"dbs_history:{model._meta.label}"
        for signal in (pre_save, post_save, pre_delete, post_delete):
            signal.disconnect(sender=model, dispatch_uid=uid)
        for field in model._meta.many_to_many:
            m2m_changed.disconnect(sender=field.remote_field.through, dispatch_uid=f"{uid}:{field.name}")


# --- per-transaction bookkeeping ---------------------------------------------------------------------------


def _alias(model: type[models.Model], using: str | None) -> str:
    return using or router.db_for_write(model) or DEFAULT_DB_ALIAS


def _key(model: type[models.Model], pk: Any) -> tuple[str, str]:
    return collect.model_label(model), str(pk)


def _bucket(using: str, name: str) -> dict:
    return transaction.get_connection(using).__dict__.setdefault(name, {})


def _live_state(using: str, key: tuple[str, str]) -> dict | None:
    """This transaction's capture of an object, unless a rollback discarded its callback (or it already ran)."""
    connection = transaction.get_connection(using)
    state = _bucket(using, PENDING).get(key)
    if state is not None and (not state["scheduled"]
                              or any(item[1] is state["flush"] for item in connection.run_on_commit)):
        return state
    return None


def _state(model: type[models.Model], pk: Any, using: str) -> dict:
    """This transaction's capture of ``model`` ``pk``, created on first use; a receiver that filled it in calls
    :func:`_send_at_commit` (outside a transaction, Django runs on-commit callbacks at once)."""
    key = _key(model, pk)
    state = _live_state(using, key)
    if state is not None:
        return state
    state = {"fields": None, "m2m": None, "created": False, "order": None, "cancelled": False, "scheduled": False,
             "baseline": _bucket(using, BEFORE).pop(key, None),
             "user": context.current_user(), "restored_from": context.current_restore()}

    def flush() -> None:
        _bucket(using, PENDING).pop(key, None)
        if not state["cancelled"]:
            for payload in payloads(model, pk, state):
                send(payload)
                _known_versioned(model, pk, using)

    state["flush"] = flush
    _bucket(using, PENDING)[key] = state
    return state


def _send_at_commit(state: dict, using: str) -> None:
    """Register the state's one on-commit callback (once per transaction)."""
    if not state["scheduled"]:
        state["scheduled"] = True
        transaction.on_commit(state["flush"], using=using)


def _lock_and_read(model: type[models.Model], pk: Any, using: str) -> models.Model | None:
    """The row, locked until the transaction ends where the engine can (``FOR UPDATE OF`` the row only)."""
    fks = [f.name for f in collect.tracked_fields(model) if f.is_relation]
    queryset = model._default_manager.db_manager(using).select_related(*fks).filter(pk=pk)
    connection = connections[using]
    if connection.in_atomic_block and connection.features.has_select_for_update:
        of = ("self",) if connection.features.has_select_for_update_of else ()
        queryset = queryset.select_for_update(of=of)
    return queryset.first()


def _draw_order(state: dict, model: type[models.Model], pk: Any, using: str, *, locked: bool) -> None:
    """The transaction's order key, drawn once, after the row is written or locked."""
    if state["order"] is None:
        if not locked:
            _lock_and_read(model, pk, using)
        state["order"] = ordering.draw(using)


# Objects this process knows to have a version (found in the index, or sent one): their saves skip the index
# query. Keyed by database and history root too, so a test database or tree made afresh starts empty.
_versioned: set[tuple] = set()
_VERSIONED_MAX = 50_000


def _versioned_key(model: type[models.Model], pk: Any, using: str) -> tuple:
    return (connections[using].settings_dict.get("NAME"), str(dbs_settings.HISTORY_ROOT), *_key(model, pk))


def _known_versioned(model: type[models.Model], pk: Any, using: str) -> None:
    if len(_versioned) >= _VERSIONED_MAX:
        _versioned.clear()
    _versioned.add(_versioned_key(model, pk, using))


def _has_version(model: type[models.Model], pk: Any, using: str) -> bool:
    if _versioned_key(model, pk, using) in _versioned:
        return True
    found = HistoryVersion.objects.filter(model_label=collect.model_label(model), object_pk=str(pk)).exists()
    if found:
        _known_versioned(model, pk, using)
    return found


def _remember_original(model: type[models.Model], pk: Any, using: str) -> None:
    """Before the first tracked write of an object without a version: read the state it had (its baseline)."""
    key = _key(model, pk)
    if pk is None or _live_state(using, key) is not None or key in _bucket(using, BEFORE):
        return
    if _has_version(model, pk, using):
        return
    try:
        obj = _lock_and_read(model, pk, using)
        if obj is not None:
            _bucket(using, BEFORE)[key] = collect.capture_instance(obj)
    except Exception:  # noqa: BLE001 - a baseline must never block the save itself
        logger.exception("history: could not read %s %s before its first tracked change", *key)


# --- receivers ---------------------------------------------------------------------------------------------


def _before_save(sender: type[models.Model], instance: models.Model, raw: bool = False, using: str | None = None,
                 **kwargs: Any) -> None:
    if raw or history_is_suspended() or instance._state.adding:
        return
    _remember_original(sender, instance.pk, _alias(sender, using))


def _on_save(sender: type[models.Model], instance: models.Model, raw: bool = False, using: str | None = None,
             created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if raw or history_is_suspended():
        return
    using = _alias(sender, using)
    state = _state(sender, instance.pk, using)
    if update_fields:  # a partial save wrote some fields; the others may be stale in memory: read the row
        obj = _lock_and_read(sender, instance.pk, using)
        state["fields"] = collect.capture_fields(obj if obj is not None else instance)
    else:
        state["fields"] = collect.capture_fields(instance)
    state["created"] = state["created"] or created
    _draw_order(state, sender, instance.pk, using, locked=True)  # the UPDATE/INSERT holds the row
    _send_at_commit(state, using)


def _on_m2m(sender: Any, instance: models.Model, action: str, reverse: bool, model: type[models.Model],
            pk_set: set | None, using: str | None = None, **kwargs: Any) -> None:
    if history_is_suspended():
        return
    if not reverse:
        tracked = type(instance)
        if registry.history_for(tracked) is None:
            return
        using = _alias(tracked, using)
        if action.startswith("pre_"):
            _remember_original(tracked, instance.pk, using)
        else:
            _tags_changed(tracked, instance.pk, using)
        return
    # Reverse side (tag.posts.add(post)): the tracked objects are the ones in pk_set.
    if registry.history_for(model) is None:
        return
    using = _alias(model, using)
    clearing = _bucket(using, CLEARING)
    if action == "pre_clear":
        field = next(f for f in model._meta.many_to_many if f.remote_field.through is sender)
        pk_set = set(model._default_manager.using(using).filter(**{field.name: instance}).values_list("pk", flat=True))
        clearing[(sender, instance.pk)] = pk_set
    elif action == "post_clear":
        pk_set = clearing.pop((sender, instance.pk), set())
    for pk in pk_set or ():
        if action.startswith("pre_"):
            _remember_original(model, pk, using)
        else:
            _tags_changed(model, pk, using)


def _tags_changed(model: type[models.Model], pk: Any, using: str) -> None:
    """A many-to-many change of a tracked object: lock its row, read its fields if not captured, and its names."""
    state = _state(model, pk, using)
    if state["order"] is None or (state["fields"] is None and not state["created"]):
        obj = _lock_and_read(model, pk, using)
        if obj is None:  # deleted in this transaction: the delete's capture covers it
            if not state["scheduled"]:
                _bucket(using, PENDING).pop(_key(model, pk), None)
            return
        if state["fields"] is None:
            state["fields"] = collect.capture_fields(obj)
        _draw_order(state, model, pk, using, locked=True)
    state["m2m"] = collect.capture_m2m(model, pk, using=using)
    _send_at_commit(state, using)


def _before_delete(sender: type[models.Model], instance: models.Model, using: str | None = None,
                   **kwargs: Any) -> None:
    if history_is_suspended():
        return
    try:
        data = collect.capture_instance(instance)
    except Exception:  # noqa: BLE001 - a snapshot must never block a delete
        logger.exception("history: could not capture %s %s before delete", sender._meta.label, instance.pk)
        return
    _bucket(_alias(sender, using), BEFORE)[("deleting",) + _key(sender, instance.pk)] = (
        data, context.current_user())


def _on_delete(sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any) -> None:
    using = _alias(sender, using)
    captured = _bucket(using, BEFORE).pop(("deleting",) + _key(sender, instance.pk), None)
    if captured is None:
        return
    data, user = captured
    if (state := _live_state(using, _key(sender, instance.pk))) is not None:
        state["cancelled"] = True  # a save earlier in this transaction: the delete's capture supersedes it
    tick, at = ordering.draw(using)  # the DELETE holds the row
    payload = make_payload(sender, instance.pk, data, user=user, deleted=True, saved_at=at)
    payload["order"] = [tick, ordering.COMMITTED]
    transaction.on_commit(lambda: send(payload), using=using)


# --- what the callback sends ---------------------------------------------------------------------------------


def payloads(model: type[models.Model], pk: Any, state: dict) -> list[dict[str, Any]]:
    """The versions a transaction's capture of one object makes: its baseline (if any), then its new state."""
    if state["fields"] is None or state["order"] is None:
        return []
    tick, at = state["order"]
    out = []
    if state["baseline"] is not None:
        baseline = make_payload(model, pk, state["baseline"], saved_at=at - dt.timedelta(microseconds=1))
        baseline["order"], baseline["baseline"] = [tick, ordering.BASELINE], True
        out.append(baseline)
    m2m_names = [f.name for f in collect.tracked_m2m(model)]
    if state["m2m"] is not None:
        data, inherit = {**state["fields"], **state["m2m"]}, []
    elif state["created"]:  # a new object whose tags nobody set: none
        data, inherit = {**state["fields"], **{name: [] for name in m2m_names}}, []
    else:
        data, inherit = dict(state["fields"]), m2m_names
    payload = make_payload(model, pk, data, user=state["user"], restored_from=state["restored_from"], saved_at=at)
    payload["order"], payload["inherit"] = [tick, ordering.COMMITTED], inherit
    out.append(payload)
    return out


def capture_now(model: type[models.Model], pk: Any, *, using: str | None = None, user: Any = None,
                restored_from: str | None = None) -> dict[str, Any] | None:
    """The committed state of one object as a payload, read now in the current transaction (its row locked).

    For changes that send no signals (``QuerySet.update()``, a baseline of existing objects): call it inside
    the transaction that made them, or in one of its own.
    """
    using = _alias(model, using)
    obj = _lock_and_read(model, pk, using)
    if obj is None:
        return None
    tick, at = ordering.draw(using)
    payload = make_payload(model, pk, collect.capture_instance(obj), user=user, restored_from=restored_from,
                           saved_at=at)
    payload["order"] = [tick, ordering.COMMITTED]
    return payload


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
