"""Optional: keep the history tree in git (placeholder until enabled; see commit_version)."""

from __future__ import annotations

from .store import ObjectHistory


def commit_version(history: ObjectHistory, version_id: str) -> None:
    return None
