"""What a dry-run restore would change: rows added, changed, removed and unchanged per model, and files.

Why compare in the payload's own form: the backup's values are the JSON-able
forms ``selection.encoder`` wrote, so encoding the live rows with the same
encoders makes a SQLite backup comparable with a PostgreSQL database and
back, without converting anything the way a real load would. Content type
and permission keys are compared after re-linking, as they would be written.
Live rows are fetched by primary key one batch of the backup at a time, so
memory stays flat however large the table.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import models

from dbs_admin.backups.selection import encoder

PK_CHUNK = 500  # primary keys per IN (...) query: far below every engine's parameter limit


@dataclass
class RowDiff:
    added: int = 0
    changed: int = 0
    unchanged: int = 0

    def describe(self, live: int) -> str:
        removed = max(0, live - self.changed - self.unchanged)
        return f"{self.added} added, {self.changed} changed, {removed} removed, {self.unchanged} unchanged"


class RowComparer:
    """Compares a model's rows from the backup, batch by batch, with the rows the database holds now."""

    def __init__(self, model: type[models.Model], alias: str, attnames: list[str],
                 mappers: dict[int, Callable[[Any], Any]]):
        fields = {f.attname: f for f in model._meta.concrete_fields}
        self.model = model
        self.alias = alias
        self.attnames = attnames
        self.encoders = [encoder(fields[name]) for name in attnames]
        self.pk_pos = attnames.index(model._meta.pk.attname)
        self.mappers = mappers  # column position -> re-linking of a content type or permission id
        self.diff = RowDiff()

    def compare(self, rows: list[list[Any]]) -> None:
        """``rows``: the backup's values of ``attnames``, in that order."""
        for row in rows:
            for i, mapper in self.mappers.items():
                row[i] = mapper(row[i])
        live = self._live([row[self.pk_pos] for row in rows])
        for row in rows:
            now = live.get(row[self.pk_pos])
            if now is None:
                self.diff.added += 1
            elif now == row:
                self.diff.unchanged += 1
            else:
                self.diff.changed += 1

    def _live(self, keys: list[Any]) -> dict[Any, list[Any]]:
        pk = self.model._meta.pk
        manager = self.model._base_manager.using(self.alias)
        found: dict[Any, list[Any]] = {}
        for start in range(0, len(keys), PK_CHUNK):
            chunk = [pk.to_python(k) for k in keys[start:start + PK_CHUNK]]
            for values in manager.filter(pk__in=chunk).values_list(*self.attnames):
                row = [v if enc is None else enc(v) for v, enc in zip(values, self.encoders, strict=True)]
                found[row[self.pk_pos]] = row
        return found


class FileDiff(Counter):
    """Files a restore would write: ``new`` (absent), ``different`` (other bytes there), ``identical``."""

    def add(self, final: Path, size: int, sha256: str) -> None:
        self[_state(final, size, sha256)] += 1

    def describe(self) -> str:
        return f"{self['new']} new, {self['different']} different, {self['identical']} identical"


def _state(final: Path, size: int, sha256: str) -> str:
    try:
        if not final.exists():
            return "new"
        if not final.is_file() or final.stat().st_size != size:
            return "different"
        with open(final, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return "different"
    return "identical" if digest == sha256 else "different"
