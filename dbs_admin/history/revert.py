"""Restore one object to a stored version — or bring back a deleted one — with a dry run first.

:func:`plan_restore` reads the version and the live object and returns exactly
what a restore would change (fields, related objects to create, tags +/-,
image files to write) without writing anything: the preview page and
``--dry-run`` show this plan. :func:`apply_restore` carries it out: image
bytes are staged and checked against their sha256 *before* the database is
touched, the rows change in one transaction, and the staged files are moved
into MEDIA_ROOT at the end of it, so a damaged tree restores nothing at all.
The restore is an ordinary save, so it becomes a new version (marked
"restored from ...") unless the object already equals the newest version.
It acts on exactly one object: related categories and tags are looked up or
created by name, never rolled back themselves.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils.text import slugify

from dbs_admin.backups.errors import UnsafePathError as BackupUnsafePathError
from dbs_admin.backups.files import check_not_protected
from dbs_admin.history import collect, context
from dbs_admin.history.errors import CorruptVersionError, HistoryError, UnsafePathError, VersionNotFoundError
from dbs_admin.history.snapshot import history_in_folder
from dbs_admin.history.store import META, ObjectHistory, folder_name
from dbs_admin.models import HistoryVersion


@dataclass(frozen=True)
class FieldPlan:
    name: str
    current: Any
    target: Any


@dataclass(frozen=True)
class ImagePlan:
    name: str
    sha256: str
    stored: str
    current_sha256: str | None


@dataclass
class RestorePlan:
    model: type[models.Model]
    history: ObjectHistory
    version_id: str
    document: dict[str, Any]
    target: models.Model | None
    fields: list[FieldPlan] = field(default_factory=list)
    related: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    created_related: list[str] = field(default_factory=list)
    images: list[ImagePlan] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)

    @property
    def creates_object(self) -> bool:
        return self.target is None

    @property
    def has_changes(self) -> bool:
        return bool(self.creates_object or self.fields or self.related or self.images)

    def lines(self) -> list[str]:
        """The plan as plain sentences (CLI output, preview page, tests)."""
        out = [f"{'create' if self.creates_object else 'update'} {self.model._meta.label} "
               f"{self.history.key!r} from version {self.version_id}"]
        out += [f"field {p.name}: {_short(p.current)} -> {_short(p.target)}" for p in self.fields]
        out += [f"create {c}" for c in self.created_related]
        for name, delta in self.related.items():
            out += [f"{name} +{v}" for v in delta["added"]] + [f"{name} -{v}" for v in delta["removed"]]
        out += [f"write image {p.name} ({p.sha256[:12]})" for p in self.images]
        out += [f"image {n} was missing when the version was taken; left as is" for n in self.missing_images]
        if not self.has_changes:
            out.append("nothing to change: the object already equals this version")
        return out


@dataclass(frozen=True)
class RestoreResult:
    obj: models.Model
    created: bool
    images_written: int


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def media_path(name: str) -> Path:
    """The MEDIA_ROOT path of a stored image name, refusing any name that would leave MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT).resolve()
    safe = collect.safe_media_name(name or "")
    path = (root / safe).resolve() if safe else None
    if path is None or not path.is_relative_to(root) or path == root:
        raise UnsafePathError(f"Image name {name!r} would be written outside MEDIA_ROOT; the version is refused.")
    try:
        check_not_protected(path, root, repr(name))  # the database file, a backup folder inside MEDIA_ROOT
    except BackupUnsafePathError as exc:
        raise UnsafePathError(f"{exc}; the version is refused.") from None
    return path


def find_history(model: type[models.Model], key: str) -> ObjectHistory:
    """The history folder of ``key`` (a slug, a pk, or a folder name from the index)."""
    for folder in (folder_name(key), key):
        try:
            history = history_in_folder(model, folder)
        except VersionNotFoundError:
            continue
        if history.exists():
            return history
    raise VersionNotFoundError(
        f"No history for {model._meta.label} {key!r}; "
        f"`dbs_history list {collect.model_label(model)}` shows what exists."
    )


def find_target(model: type[models.Model], history: ObjectHistory, document: dict[str, Any]) -> models.Model | None:
    """The live object a version belongs to: same pk (and same folder), else same key field value."""
    key_field = collect.options_for(model).key_field
    pk = document.get(META, {}).get("pk")
    manager = model._default_manager
    if pk:
        obj = manager.filter(pk=pk).first()
        if obj is not None:
            same_key = document.get(key_field) and getattr(obj, key_field, None) == document.get(key_field)
            in_folder = HistoryVersion.objects.filter(
                model_label=history.label, object_key=history.dir.name, object_pk=str(pk)
            ).exists()
            if same_key or in_folder:
                return obj
    if document.get(key_field):
        return manager.filter(**{key_field: document[key_field]}).first()
    return None


def plan_restore(model: type[models.Model], key: str, version_id: str | None = None) -> RestorePlan:
    """Exactly what restoring ``key`` to ``version_id`` (default: the newest) would change; writes nothing."""
    collect.options_for(model)
    history = find_history(model, key)
    versions = history.versions()
    version_id = version_id or versions[-1]
    document = history.read(version_id)
    target = find_target(model, history, document)
    plan = RestorePlan(model, history, version_id, document, target)
    current = collect.capture_instance(target) if target is not None else {}
    ignored = collect.ignored_in_compare(model)
    for f in collect.tracked_fields(model):
        if f.name not in document or f.name in ignored:
            continue
        if target is None or current.get(f.name) != document[f.name]:
            plan.fields.append(FieldPlan(f.name, current.get(f.name), document[f.name]))
        if f.is_relation and document[f.name] is not None and _find_related(f.related_model, document[f.name]) is None:
            plan.created_related.append(f"{f.related_model._meta.verbose_name} {document[f.name]!r}")
    for f in collect.tracked_m2m(model):
        if f.name not in document:
            continue
        old, new = set(current.get(f.name) or []), set(document[f.name] or [])
        if old != new:
            plan.related[f.name] = {"added": sorted(new - old), "removed": sorted(old - new)}
        plan.created_related += [
            f"{f.related_model._meta.verbose_name} {v!r}" for v in sorted(new)
            if _find_related(f.related_model, v) is None
        ]
    for entry in document.get("images") or []:
        if not entry.get("stored") or not entry.get("sha256"):
            plan.missing_images.append(entry["name"])
            continue
        path = media_path(entry["name"])
        history.image_path(entry["stored"])
        current_sha = collect.sha256_file(path) if path.is_file() else None
        if current_sha != entry["sha256"]:
            plan.images.append(ImagePlan(entry["name"], entry["sha256"], entry["stored"], current_sha))
    return plan


def _find_related(related_model: type[models.Model], value: Any) -> models.Model | None:
    label = collect.related_label_field(related_model) or "pk"
    return related_model._default_manager.filter(**{label: value}).first()


def _get_or_create_related(related_model: type[models.Model], value: Any) -> models.Model:
    found = _find_related(related_model, value)
    if found is not None:
        return found
    label = collect.related_label_field(related_model)
    if label is None:
        raise HistoryError(
            f"{related_model._meta.label} pk={value!r} no longer exists and cannot be recreated from a version; "
            "restore it first (e.g. from a backup)."
        )
    values: dict[str, Any] = {label: value}
    for f in related_model._meta.concrete_fields:
        if isinstance(f, models.SlugField) and f.name != label:
            base = slugify(str(value))[: f.max_length - 9] or "item"
            slug, n = base, 1
            while f.unique and related_model._default_manager.filter(**{f.name: slug}).exists():
                n += 1
                slug = f"{base}-{n}"
            values[f.name] = slug
    return related_model._default_manager.create(**values)


def _stage_images(plan: RestorePlan) -> list[tuple[Path, Path]]:
    """Copy every image to a temporary file beside its destination, checking its sha256; nothing is replaced yet."""
    staged: list[tuple[Path, Path]] = []
    try:
        for image in plan.images:
            source = plan.history.image_path(image.stored)
            dest = media_path(image.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".dbs-restore-{uuid.uuid4().hex}-{dest.name}")
            staged.append((tmp, dest))
            digest = hashlib.sha256()
            with open(source, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(collect.HASH_CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            if digest.hexdigest() != image.sha256:
                raise CorruptVersionError(
                    f"Stored bytes of {image.name!r} ({image.stored}) do not match their sha256; nothing was restored. "
                    "The history tree is damaged: restore it from a backup."
                )
    except BaseException:
        for tmp, _dest in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def apply_restore(plan: RestorePlan, *, user: Any = None) -> RestoreResult:
    """Carry out ``plan``: rows in one transaction, image files moved in at its end."""
    model, document = plan.model, plan.document
    staged = _stage_images(plan)
    try:
        with transaction.atomic(), context.acting_user(user), context.restoring(plan.version_id):
            obj = plan.target
            created = obj is None
            if created:
                obj = model()
                pk = document.get(META, {}).get("pk")
                if pk and not model._default_manager.filter(pk=pk).exists():
                    obj.pk = model._meta.pk.to_python(pk)
            ignored = collect.ignored_in_compare(model)
            for f in collect.tracked_fields(model):
                if f.name not in document or f.name in ignored:
                    continue
                value = document[f.name]
                if f.is_relation:
                    setattr(obj, f.name, None if value is None else _get_or_create_related(f.related_model, value))
                else:
                    setattr(obj, f.attname, f.to_python(value))
            obj.save()
            for f in collect.tracked_m2m(model):
                if f.name in document:
                    getattr(obj, f.name).set([_get_or_create_related(f.related_model, v) for v in document[f.name]])
            for tmp, dest in staged:
                os.replace(tmp, dest)
    finally:
        for tmp, _dest in staged:
            tmp.unlink(missing_ok=True)
    return RestoreResult(obj, created, len(staged))


def restore(model: type[models.Model], key: str, version_id: str | None = None, *, user: Any = None,
            dry_run: bool = False) -> tuple[RestorePlan, RestoreResult | None]:
    """Plan, and unless ``dry_run``, apply a restore (the CLI and the admin call this)."""
    plan = plan_restore(model, key, version_id)
    return plan, (None if dry_run else apply_restore(plan, user=user))
