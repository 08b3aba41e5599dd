"""What projects declare in their ``<app>/dbs.py`` modules.

``dbs.py`` modules are imported at start-up (like ``admin.py``) and call the
functions here to:

* override how a model's fields are backed up (:func:`register`),
* give a model per-object version history (:func:`track_history`),
* add smoke checks that restore drills run against the scratch database
  (:func:`smoke_check`).

The registry only records declarations; the backup, history and drill
services read it. Keeping it plain data makes ``dbs.py`` files cheap to import
and easy to test.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models


class FieldKind(enum.Enum):
    """How one field travels in a logical backup."""

    VALUE = "value"  # the column's value (the default for every field)
    FILE = "file"  # a FileField/ImageField: embed the file's bytes
    FILE_PATH = "file_path"  # a CharField holding a path: embed the file it names
    EXCLUDE = "exclude"  # leave the column out; restore keeps the model default


@dataclass(frozen=True)
class ModelPolicy:
    """Per-model backup overrides declared with :func:`register`."""

    model: type[models.Model]
    fields: Mapping[str, FieldKind] = field(default_factory=dict)
    file_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryOptions:
    """How a model's versions are named and collected, declared with :func:`track_history`.

    ``key_field`` names the folder of an object in the history tree (falls
    back to the primary key when empty); ``html_fields`` are scanned for
    ``<img src>`` under MEDIA_URL; ``markdown_field`` becomes the body of the
    human-readable ``.md`` file.
    """

    model: type[models.Model]
    key_field: str = "slug"
    html_fields: tuple[str, ...] = ()
    markdown_field: str | None = None
    exclude_fields: tuple[str, ...] = ()


SmokeCheck = Callable[[Any], Any]
"""A drill smoke check; raises (or returns False) to fail, returns what it proved.

Annotate its parameter ``dbs_admin.drills.smoke.SmokeContext`` and it is
handed one: ``smoke.sample(queryset)`` yields the objects to check (the
first, the last and a seeded random few, within the drill's time budget; or
every one with ``dbs_drill --full-smoke``) while the ORM reads the scratch
database, and a failure names the object it happened on. Otherwise it is
called with the scratch database alias and runs whole (the older form).
"""


class Registry:
    """Holds every declaration made by ``dbs.py`` modules."""

    def __init__(self) -> None:
        self.policies: dict[type[models.Model], ModelPolicy] = {}
        self.history: dict[type[models.Model], HistoryOptions] = {}
        self.smoke_checks: dict[str, SmokeCheck] = {}

    def policy_for(self, model: type[models.Model]) -> ModelPolicy:
        return self.policies.get(model) or ModelPolicy(model=model)

    def history_for(self, model: type[models.Model]) -> HistoryOptions | None:
        return self.history.get(model)


registry = Registry()


def register(
    model: type[models.Model],
    *,
    fields: Mapping[str, FieldKind] | None = None,
    file_roots: Iterable[str] = (),
) -> ModelPolicy:
    """Override how ``model`` is backed up; unknown field names fail at once."""
    fields = dict(fields or {})
    known = {f.name for f in model._meta.get_fields()} | {
        f.attname for f in model._meta.concrete_fields
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{model._meta.label} has no fields {unknown} (declared in dbs.py)")
    policy = ModelPolicy(model=model, fields=fields, file_roots=tuple(str(r) for r in file_roots))
    registry.policies[model] = policy
    return policy


def track_history(
    model: type[models.Model],
    *,
    key_field: str = "slug",
    html_fields: Iterable[str] = (),
    markdown_field: str | None = None,
    exclude_fields: Iterable[str] = (),
) -> HistoryOptions:
    """Give ``model`` per-object version history (snapshot on every save)."""
    options = HistoryOptions(
        model=model,
        key_field=key_field,
        html_fields=tuple(html_fields),
        markdown_field=markdown_field,
        exclude_fields=tuple(exclude_fields),
    )
    registry.history[model] = options
    return options


def smoke_check(func: SmokeCheck | None = None, *, name: str | None = None) -> Any:
    """Register a drill smoke check (see :data:`SmokeCheck`): ``@smoke_check`` or ``@smoke_check(name=...)``."""

    def add(f: SmokeCheck) -> SmokeCheck:
        registry.smoke_checks[name or f"{f.__module__}.{f.__qualname__}"] = f
        return f

    return add(func) if func is not None else add
