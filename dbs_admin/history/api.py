"""Public calls for code that changes tracked objects without ``save()``.

``QuerySet.update()``, ``bulk_create()`` and raw SQL send no signals, so they
make no versions by themselves. Call :func:`snapshot_queryset` after them::

    Post.objects.filter(status="draft").update(status="published")
    snapshot_queryset(Post.objects.filter(status="published"), user=request.user)
"""

from __future__ import annotations

from typing import Any

from django.db import models

from dbs_admin.history import collect, signals


def snapshot_queryset(queryset: models.QuerySet, *, user: Any = None) -> int:
    """Schedule a snapshot of every object in ``queryset`` after the current transaction commits.

    Objects whose state equals their newest version produce no new version.
    Returns the number of objects scheduled.
    """
    model = queryset.model
    collect.options_for(model)
    count = 0
    from dbs_admin.history.context import acting_user

    with acting_user(user):
        for pk in queryset.values_list("pk", flat=True).iterator(chunk_size=2000):
            signals.schedule(model, pk, using=queryset.db, read_m2m=True)
            count += 1
    return count
