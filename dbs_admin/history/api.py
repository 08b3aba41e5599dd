"""Public calls for code that changes tracked objects without ``save()``, and for a baseline of existing ones.

``QuerySet.update()``, ``bulk_create()`` and raw SQL send no signals, so they
make no versions by themselves. Call :func:`snapshot_queryset` after them,
in the same transaction::

    with transaction.atomic():
        Post.objects.filter(status="draft").update(status="published")
        snapshot_queryset(Post.objects.filter(status="published"), user=request.user)

Objects that existed before history was tracked get their original state as
a first version at their first tracked save anyway; :func:`take_baseline`
(``manage.py dbs_history snapshot``) records it for all of them at once, the
way django-reversion's ``createinitialrevisions`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models, transaction

from dbs_admin.history import collect, signals
from dbs_admin.models import HistoryVersion
from dbs_admin.registry import registry


def snapshot_queryset(queryset: models.QuerySet, *, user: Any = None) -> int:
    """Capture every object of ``queryset`` now (rows locked, in the current transaction) and send the
    versions when it commits. Objects whose state equals their newest version make no new version.
    Returns the number of objects captured."""
    model = queryset.model
    collect.options_for(model)
    using = queryset.db
    payloads: list[dict[str, Any]] = []
    with transaction.atomic(using=using):
        for pk in queryset.values_list("pk", flat=True).iterator(chunk_size=2000):
            if (payload := signals.capture_now(model, pk, using=using, user=user)) is not None:
                payloads.append(payload)
        transaction.on_commit(lambda: [signals.send(p) for p in payloads], using=using)
    return len(payloads)


def pks_without_versions(model: type[models.Model]) -> list[Any]:
    """Primary keys of a tracked model's objects that have no version yet (they existed before history was
    tracked), in order."""
    label = collect.model_label(model)
    known = set(HistoryVersion.objects.filter(model_label=label).values_list("object_pk", flat=True).distinct())
    everything = model._default_manager.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=5000)
    return [pk for pk in everything if str(pk) not in known]


def take_baseline(models_: Iterable[type[models.Model]] | None = None, *, batch_size: int = 200) -> dict[str, int]:
    """A first version of every object of the tracked models (or ``models_``) that has none, written here.

    Each batch is read in a transaction of its own (rows locked, order keys drawn), then written after it
    commits, in this process: no worker is needed, and the command returns when the tree has them all.
    Returns the number of versions written per model label.
    """
    from dbs_admin.history.snapshot import take_snapshot

    written: dict[str, int] = {}
    for model in list(models_ or registry.history):
        collect.options_for(model)
        pks = pks_without_versions(model)
        count = 0
        for start in range(0, len(pks), batch_size):
            with transaction.atomic():
                payloads = [p for pk in pks[start:start + batch_size] if (p := signals.capture_now(model, pk))]
            count += sum(1 for p in payloads if take_snapshot(p))
        written[collect.model_label(model)] = count
    return written
