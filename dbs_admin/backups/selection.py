"""Which models a logical backup carries, in which order, and how each column travels.

Why here and not in capture/restore: both sides must agree exactly on the
model set (EXCLUDE_MODELS, the console's own records, content types and
permissions carried by natural key) and on how a value is turned into JSON
and back. Values go through the field's own conversion (``to_python`` and
``get_db_prep_save``), never the engine's raw form, so a backup of SQLite
restores into PostgreSQL and back.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.duration import duration_string

from dbs_admin.conf import dbs_settings
from dbs_admin.registry import FieldKind, registry

REF_MODELS = ("contenttypes.ContentType", "auth.Permission")
"""Never copied by id: re-linked by natural key into whatever ids the target database has."""


def _matches(label: str, patterns: Iterable[str]) -> bool:
    app_label = label.split(".", 1)[0]
    lowered = label.lower()
    return any(p.lower() == lowered or p == f"{app_label}.*" for p in patterns)


def is_excluded(model: type[models.Model]) -> bool:
    """Excluded by ``EXCLUDE_MODELS`` (an auto-created M2M table follows the model that declares it)."""
    meta = model._meta
    patterns = list(dbs_settings.EXCLUDE_MODELS)
    owner = _declaring_model(model)
    if owner is not None:
        return _matches(owner._meta.label, patterns) or _matches(meta.label, patterns)
    return _matches(meta.label, patterns)


def _declaring_model(through: type[models.Model]) -> type[models.Model] | None:
    owner = through._meta.auto_created
    return owner if isinstance(owner, type) else None


def _storable(model: type[models.Model]) -> bool:
    meta = model._meta
    return meta.managed and not meta.proxy and not meta.swapped and meta.concrete_model is model


def ref_models() -> list[type[models.Model]]:
    """ContentType and Permission, when their apps are installed."""
    out = []
    for label in REF_MODELS:
        try:
            out.append(apps.get_model(label))
        except LookupError:
            pass
    return out


def all_storable_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models(include_auto_created=True) if _storable(m)]


def backed_up_models() -> list[type[models.Model]]:
    """Every model a logical backup carries, parents before children (FK dependency order)."""
    refs = set(REF_MODELS)
    chosen = [m for m in all_storable_models() if m._meta.label not in refs and not is_excluded(m)]
    return dependency_order(chosen)


def dependency_order(chosen: list[type[models.Model]]) -> list[type[models.Model]]:
    """Topological order over foreign keys; cycles are tolerated (the restore defers FK checks)."""
    pending = {m: {f.related_model._meta.concrete_model for f in m._meta.concrete_fields
                   if f.is_relation and f.related_model is not None} & set(chosen) - {m}
               for m in chosen}
    ordered: list[type[models.Model]] = []
    while pending:
        ready = [m for m, deps in pending.items() if not deps]
        if not ready:  # a cycle: take the one with the fewest open dependencies
            ready = [min(pending, key=lambda m: (len(pending[m]), m._meta.label))]
        for m in sorted(ready, key=lambda m: m._meta.label):
            ordered.append(m)
            del pending[m]
        for deps in pending.values():
            deps.difference_update(ready)
    return ordered


# --- columns -------------------------------------------------------------------------------------

_ISO = ("DateTimeField", "DateField", "TimeField")
_STR = ("DecimalField", "UUIDField")
_PASS_THROUGH_DB = {
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField", "CharField", "TextField",
    "SlugField", "EmailField", "URLField", "BooleanField", "FloatField", "FileField", "ImageField",
    "FilePathField",
}


def _value_field(field: models.Field) -> models.Field:
    """The field whose values a column holds: a foreign key holds its target's values."""
    while field.is_relation and getattr(field, "target_field", None) is not None and field.target_field is not field:
        field = field.target_field
    return field


def _internal_type(field: models.Field) -> str:
    return _value_field(field).get_internal_type()


def _builtin(field: models.Field) -> bool:
    return type(field).__module__.startswith("django.")


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, (str, int, float, bool, list, dict)) else str(v)


def encoder(field: models.Field) -> Callable[[Any], Any] | None:
    """How a Python value of ``field`` becomes JSON (None: it already is JSON)."""
    vf = _value_field(field)
    if not _builtin(vf):  # a third-party field: its own get_prep_value says what the stored value is
        return lambda v: None if v is None else _jsonable(vf.get_prep_value(v))
    kind = vf.get_internal_type()
    if kind in _ISO:
        return lambda v: None if v is None else v.isoformat()
    if kind in _STR:
        return lambda v: None if v is None else str(v)
    if kind == "DurationField":
        return lambda v: None if v is None else duration_string(v)
    if kind == "BinaryField":
        return lambda v: None if v is None else base64.b64encode(bytes(v)).decode("ascii")
    if kind in _PASS_THROUGH_DB or kind == "JSONField":
        return None
    return _jsonable


def decoder(field: models.Field, connection) -> Callable[[Any], Any] | None:
    """How a JSON value becomes what the target database's driver takes (None: pass it through)."""
    target = _value_field(field)
    kind = target.get_internal_type()
    if kind in _PASS_THROUGH_DB and _builtin(target):
        return None

    fast = _fast_decoder(target, kind, connection)
    if fast is not None:
        return fast

    def convert(v: Any) -> Any:
        if v is None:
            return None
        return target.get_db_prep_save(target.to_python(v), connection)

    if kind == "JSONField":
        return lambda v: field.get_db_prep_save(v, connection)
    return convert


def _fast_decoder(field: models.Field, kind: str, connection) -> Callable[[Any], Any] | None:
    """Dates and times parsed with ``fromisoformat`` and adapted by the backend's own ``adapt_*_value``.

    This is what ``get_db_prep_save`` ends in, minus ``to_python``'s general
    parsing: a restore spends most of its Python time here otherwise.
    """
    if not _builtin(field) or type(field) not in (models.DateTimeField, models.DateField, models.TimeField):
        return None
    ops = connection.ops
    if kind == "DateTimeField" and connection.vendor == "sqlite" and settings.USE_TZ:
        return _sqlite_datetime_decoder(field, connection)
    if kind == "DateTimeField":
        parse, adapt = datetime.datetime.fromisoformat, ops.adapt_datetimefield_value
        if settings.USE_TZ:
            parse = _aware_parser()
    elif kind == "DateField":
        parse, adapt = datetime.date.fromisoformat, ops.adapt_datefield_value
    else:
        parse, adapt = datetime.time.fromisoformat, ops.adapt_timefield_value

    def convert(v: Any) -> Any:
        if v is None:
            return None
        try:
            return adapt(parse(v))
        except (TypeError, ValueError):
            return field.get_db_prep_save(field.to_python(v), connection)

    return convert


def _aware_parser() -> Callable[[str], datetime.datetime]:
    """``fromisoformat`` that places a naive value in the default time zone, as Django's ``get_prep_value`` does."""
    default_tz = timezone.get_default_timezone()
    parse = datetime.datetime.fromisoformat

    def aware(v: str) -> datetime.datetime:
        value = parse(v)
        return value.replace(tzinfo=default_tz) if value.tzinfo is None else value

    return aware


def _sqlite_datetime_decoder(field: models.Field, connection) -> Callable[[Any], Any]:
    """SQLite's ``adapt_datetimefield_value`` with USE_TZ, as direct C calls: the naive text in the connection's zone.

    Django's version reads a lazy setting and checks awareness through two
    helpers for every value; with tens of thousands of timestamps that was a
    tenth of a logical restore. The result is the same string.

    When the connection's zone is UTC (Django's default), a value in exactly
    the form ``isoformat()`` gives a UTC datetime (``...+00:00``, with six
    fraction digits or none) is already that text once the ``T`` and the
    offset are dropped: it is still parsed, so a malformed value is refused
    as before, but not converted.
    """
    tz = connection.timezone
    parse = _aware_parser()
    utc = tz == datetime.UTC

    def convert(v: Any) -> Any:
        if v is None:
            return None
        try:
            value = parse(v)
        except (TypeError, ValueError):
            return field.get_db_prep_save(field.to_python(v), connection)
        if utc and v[-6:] == "+00:00" and v[10] == "T" and (len(v) == 25 or (len(v) == 32 and v[19] == "."
                                                                            and v[20:26] != "000000")):
            return f"{v[:10]} {v[11:-6]}"
        return str(value.astimezone(tz).replace(tzinfo=None))

    return convert


_TEXT = {"CharField", "TextField", "SlugField", "EmailField", "URLField", "FileField", "ImageField", "FilePathField"}
_INTEGER = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
            "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField"}
_WHAT = {"DateTimeField": "date and time", "DateField": "date", "TimeField": "time", "DecimalField": "decimal number",
         "UUIDField": "UUID", "JSONField": "JSON value", "DurationField": "duration", "BinaryField": "binary data"}


@dataclass(frozen=True)
class ValueRule:
    """What a column the restore passes straight to the driver may hold, checked one batch at a time.

    Why: the driver would store whatever arrives (SQLite keeps bytes in a text column as a BLOB, and
    the model then returns ``bytes``), so a crafted backup could plant values the site cannot read.
    The check is a ``set(map(type, column))`` per batch: C speed, whatever the number of rows.
    """

    what: str  # for the message: "text", "integer", ...
    types: frozenset
    low: int | None = None
    high: int | None = None

    def first_bad(self, values) -> int | None:
        """The index of the first value this column must not hold, or None."""
        if set(map(type, values)) <= self.types:
            if self.low is None:
                return None
            present = [v for v in values if v is not None]
            if not present or (self.low <= min(present) and max(present) <= self.high):
                return None
        for i, v in enumerate(values):
            if type(v) not in self.types or (self.low is not None and v is not None and not self.low <= v <= self.high):
                return i
        return None


def value_rule(field: models.Field, connection) -> ValueRule | None:
    """The rule for a built-in field whose values go to the driver as they are (None: its decoder checks)."""
    vf = _value_field(field)
    kind = vf.get_internal_type()
    if not _builtin(vf) or kind not in _PASS_THROUGH_DB:
        return None
    none = type(None)
    if kind in _TEXT:
        return ValueRule("text", frozenset({str, none}))
    if kind in _INTEGER:
        low, high = connection.ops.integer_field_range(kind)
        low = -(2**63) if low is None else low
        high = 2**63 - 1 if high is None else high
        return ValueRule("integer", frozenset({int, none}), low, high)
    if kind == "BooleanField":
        return ValueRule("true/false value", frozenset({bool, int, none}), 0, 1)  # SQLite stores 0 and 1
    if kind == "FloatField":
        return ValueRule("number", frozenset({float, int, none}))
    return None


def value_kind(field: models.Field) -> str:
    """What a converted field's values are, in words (for the message that refuses one)."""
    return _WHAT.get(_internal_type(field), "value")


@dataclass(frozen=True)
class FileColumn:
    attname: str
    kind: FieldKind  # FILE or FILE_PATH
    field: models.Field


def field_kind(model: type[models.Model], field: models.Field) -> FieldKind:
    policy = registry.policy_for(model)
    declared = policy.fields.get(field.name) or policy.fields.get(field.attname)
    if declared is not None:
        return declared
    if isinstance(field, models.FileField):
        return FieldKind.FILE
    return FieldKind.VALUE


def columns(model: type[models.Model]) -> list[models.Field]:
    """The concrete fields carried (EXCLUDE kinds left out), primary key first."""
    fields = [f for f in model._meta.concrete_fields if field_kind(model, f) is not FieldKind.EXCLUDE]
    pk = model._meta.pk
    return [pk] + [f for f in fields if f is not pk]


def file_columns(model: type[models.Model]) -> list[FileColumn]:
    out = []
    for f in columns(model):
        kind = field_kind(model, f)
        if kind in (FieldKind.FILE, FieldKind.FILE_PATH):
            out.append(FileColumn(f.attname, kind, f))
    return out
