"""The state of a tracked object as plain, JSON-ready data, and the images it references.

``capture()`` runs in the web process right after the commit (it is cheap: one
query for the row, one per many-to-many field), so the snapshot records what
was committed even if the worker runs later. ``collect_images()`` runs in the
worker: it reads and hashes the files, which may be slow.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import posixpath
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from dbs_admin.history.errors import NotTrackedError
from dbs_admin.registry import HistoryOptions, registry

HASH_CHUNK = 1024 * 1024


def model_label(model: type[models.Model]) -> str:
    """``"app_label.model_name"``: the folder name of a model in the tree and its index label."""
    return f"{model._meta.app_label}.{model._meta.model_name}"


def model_for_label(label: str) -> type[models.Model]:
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise NotTrackedError(f"No model {label!r}: name it as app_label.ModelName, e.g. blog.Post.") from exc
    options_for(model)
    return model


def options_for(model: type[models.Model]) -> HistoryOptions:
    options = registry.history_for(model)
    if options is None:
        raise NotTrackedError(
            f"{model._meta.label} has no history: call track_history({model.__name__}, ...) in its app's dbs.py."
        )
    return options


def related_label_field(related_model: type[models.Model]) -> str | None:
    """The unique human field that names a related object in the tree (category and tag *names*), if any."""
    for name in ("name", "title", "slug"):
        try:
            field = related_model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if getattr(field, "unique", False):
            return name
    return None


def tracked_fields(model: type[models.Model]) -> list[models.Field]:
    """Concrete fields stored in a snapshot: every one but the primary key and the excluded ones."""
    excluded = set(options_for(model).exclude_fields)
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.name not in excluded]


def tracked_m2m(model: type[models.Model]) -> list[models.ManyToManyField]:
    excluded = set(options_for(model).exclude_fields)
    return [f for f in model._meta.many_to_many if f.name not in excluded]


def ignored_in_compare(model: type[models.Model]) -> set[str]:
    """Fields a save changes by itself (``auto_now``): a save that changes nothing else is no new version."""
    return {f.name for f in model._meta.concrete_fields if getattr(f, "auto_now", False)}


def _plain(value: Any) -> Any:
    """A JSON- and YAML-ready value: in-memory values can be enum members (choices) or str subclasses."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return str(value)
    if value is None or isinstance(value, (int, float, bool, list, dict)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, models.fields.files.FieldFile):
        return value.name or ""
    return str(value)


def capture(model: type[models.Model], pk: Any) -> dict[str, Any] | None:
    """The committed state of one object (fields, related names), or None if it no longer exists."""
    fks = [f.name for f in tracked_fields(model) if f.is_relation]
    obj = model._default_manager.select_related(*fks).filter(pk=pk).first()
    return None if obj is None else capture_instance(obj)


def capture_instance(obj: models.Model) -> dict[str, Any]:
    """Fields and many-to-many names of an object (one query per many-to-many field)."""
    return {**capture_fields(obj), **capture_m2m(type(obj), obj.pk, using=obj._state.db)}


def capture_fields(obj: models.Model) -> dict[str, Any]:
    """The concrete fields as saved, from memory: no query unless a foreign key's object is not loaded yet."""
    data: dict[str, Any] = {}
    for field in tracked_fields(type(obj)):
        if field.is_relation:
            related = getattr(obj, field.name)
            label = related_label_field(field.related_model)
            data[field.name] = None if related is None else _plain(getattr(related, label) if label else related.pk)
        else:
            data[field.name] = _plain(field.value_from_object(obj))
    return data


def capture_m2m(model: type[models.Model], pk: Any, using: str | None = None) -> dict[str, Any]:
    """The names of the related objects of each many-to-many field, sorted."""
    data: dict[str, Any] = {}
    for field in tracked_m2m(model):
        label = related_label_field(field.related_model) or "pk"
        through = field.remote_field.through._default_manager.db_manager(using)
        source = field.m2m_field_name()
        values = through.filter(**{source: pk}).values_list(f"{field.m2m_reverse_field_name()}__{label}", flat=True)
        data[field.name] = sorted(_plain(v) for v in values)
    return data


class _ImgSrcParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            for name, value in attrs:
                if name == "src" and value:
                    self.sources.append(value)


def safe_media_name(name: str) -> str | None:
    """A normalised MEDIA_ROOT-relative name, or None when it would leave MEDIA_ROOT."""
    name = name.replace("\\", "/")
    normal = posixpath.normpath(name)
    if not name or name.startswith("/") or normal.startswith("../") or normal in {".", ".."}:
        return None
    return normal


def media_names_in_html(html: str) -> list[str]:
    """Media-relative names of the ``<img src>`` under MEDIA_URL, in order of appearance, without repeats."""
    prefix = urlsplit(settings.MEDIA_URL).path
    parser = _ImgSrcParser()
    parser.feed(html or "")
    names: list[str] = []
    for src in parser.sources:
        path = urlsplit(src).path
        if prefix and path.startswith(prefix):
            name = safe_media_name(unquote(path[len(prefix):]))
            if name and name not in names:
                names.append(name)
    return names


def image_names(model: type[models.Model], data: dict[str, Any]) -> list[tuple[str, str]]:
    """``(media name, source)`` of every file the object references: its file fields, then its HTML."""
    options = options_for(model)
    found: list[tuple[str, str]] = []
    for field in tracked_fields(model):
        if isinstance(field, models.FileField) and data.get(field.name):
            name = safe_media_name(data[field.name])
            if name:
                found.append((name, f"field:{field.name}"))
    seen = {n for n, _ in found}
    for field_name in options.html_fields:
        for name in media_names_in_html(data.get(field_name) or ""):
            if name not in seen:
                seen.add(name)
                found.append((name, f"html:{field_name}"))
    return found


@dataclass(frozen=True)
class ImageFile:
    """One referenced file as found in MEDIA_ROOT; ``sha256`` is None when the file is missing."""

    name: str
    source: str
    path: Path
    sha256: str | None
    size: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def collect_images(model: type[models.Model], data: dict[str, Any]) -> list[ImageFile]:
    root = Path(settings.MEDIA_ROOT)
    images = []
    for name, source in image_names(model, data):
        path = root / name
        if path.is_file():
            images.append(ImageFile(name, source, path, sha256_file(path), path.stat().st_size))
        else:
            images.append(ImageFile(name, source, path, None, 0))
    return images
