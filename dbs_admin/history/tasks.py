"""Celery task of the history feature: thin, it calls ``snapshot.take_snapshot``."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="dbs_admin.history.snapshot_object", ignore_result=True, acks_late=True)
def snapshot_object(payload: dict[str, Any]) -> str | None:
    """Write one version from a payload made by ``signals.flush_snapshot`` (or the delete handler)."""
    from dbs_admin.history.snapshot import take_snapshot

    return take_snapshot(payload)
