"""``dbs_history import PATH``: adopt a tree of the blog's original layout into our history.

The original layout (one folder per post, keyed by slug)::

    backups/<slug>/post.json  post.md  images/<file>
    backups/<slug>/updates/update_YYYY-MM-DD_HH-MM-SS/post.json  images/<new files>

Its ``images`` lists only the files copied into that folder, by name. Here
each version's images are the ``<img src>`` of its HTML (and its file
fields), and their bytes are found by file name in that version's folder or
an earlier one (the newest earlier copy wins, as the original restore did).
Every version becomes one of ours, hashed and deduplicated, with its original
time; objects without a live row are marked deleted so they appear under
*Recover deleted*. Objects that already have history here are skipped, never
merged. Our own tree (microsecond update names) is read the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import models
from django.utils.dateparse import parse_datetime

from dbs_admin.history import collect, index, markdown
from dbs_admin.history.errors import ImportTreeError
from dbs_admin.history.snapshot import object_history, summarize
from dbs_admin.history.store import META, UPDATE_PREFIX

_TIME_FORMATS = ("%Y-%m-%d_%H-%M-%S_%f", "%Y-%m-%d_%H-%M-%S")


@dataclass
class ImportReport:
    imported: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    images_stored: int = 0

    def lines(self) -> list[str]:
        out = [f"imported {key}: {n} versions" for key, n in self.imported.items()]
        out += [f"skipped {key}: {why}" for key, why in self.skipped.items()]
        out.append(f"{len(self.imported)} objects, {sum(self.imported.values())} versions, "
                   f"{self.images_stored} image files stored")
        return out


def _update_time(name: str) -> dt.datetime:
    stamp = name[len(UPDATE_PREFIX):]
    for fmt in _TIME_FORMATS:
        try:
            return dt.datetime.strptime(stamp, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    raise ImportTreeError(f"{name!r} is not named update_YYYY-MM-DD_HH-MM-SS; rename it or remove it from the tree.")


def _object_dirs(path: Path) -> list[Path]:
    if not path.is_dir():
        raise ImportTreeError(f"{path} is not a folder; pass the folder that holds <slug>/post.json.")
    if (path / "post.json").is_file():
        return [path]
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "post.json").is_file())
    if not dirs:
        raise ImportTreeError(f"No <slug>/post.json under {path}; is this a history tree of the original layout?")
    return dirs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImportTreeError(f"{path} is not readable JSON ({exc}); fix or remove it, then import again.") from exc
    if not isinstance(data, dict):
        raise ImportTreeError(f"{path} does not hold a JSON object.")
    return data


def _versions(obj_dir: Path, json_name: str) -> list[tuple[str, Path, dt.datetime | None]]:
    found: list[tuple[str, Path, dt.datetime | None]] = [("initial", obj_dir, None)]
    updates = obj_dir / "updates"
    if updates.is_dir():
        for item in sorted(updates.iterdir()):
            if item.is_dir() and item.name.startswith(UPDATE_PREFIX) and (item / json_name).is_file():
                found.append((item.name, item, _update_time(item.name)))
    return found


def import_tree(path: str | Path, model: type[models.Model]) -> ImportReport:
    """Adopt every object folder under ``path`` as history of ``model``."""
    options = collect.options_for(model)
    json_name = "post.json"
    wanted = {f.name for f in collect.tracked_fields(model)} | {f.name for f in collect.tracked_m2m(model)}
    report = ImportReport()
    for obj_dir in _object_dirs(Path(path)):
        versions = _versions(obj_dir, json_name)
        documents = [_read_json(vdir / json_name) for _, vdir, _ in versions]
        key = str(documents[-1].get(options.key_field) or obj_dir.name)
        history = object_history(model, key)
        with history.lock():
            if history.exists():
                report.skipped[key] = "already has history here"
                continue
            live = model._default_manager.filter(**{options.key_field: key}).first()
            available: dict[str, Path] = {}
            previous: dict[str, Any] | None = None
            count = 0
            for (_name, vdir, when), document in zip(versions, documents):
                if (vdir / "images").is_dir():
                    available.update({p.name: p for p in (vdir / "images").iterdir() if p.is_file()})
                fields = {k: v for k, v in document.items() if k in wanted}
                images = _images(model, fields, available)
                when = when or parse_datetime(str(document.get("updated_at") or document.get("created_at") or "")) \
                    or dt.datetime.now(dt.UTC)
                summary = summarize(model, previous, fields, images)
                summary["imported_from"] = f"{obj_dir.name}/{vdir.relative_to(obj_dir).as_posix()}".rstrip("/.")
                version_id = history.next_version_id(when)
                meta = {
                    "model": collect.model_label(model), "pk": str(live.pk) if live else "", "key": key,
                    "key_field": options.key_field, "title": str(fields.get("title") or key)[:300],
                    "saved_at": when.isoformat(), "written_at": when.isoformat(), "user_id": None,
                    "username": "", "summary": summary,
                }
                text = markdown.render(options, fields, [i.name for i in images], version_id)
                before = len(history.stored_images())
                version_id, _ = history.write_version(fields, images, meta, text, now=when, version_id=version_id)
                report.images_stored += len(history.stored_images()) - before
                index.record(history, version_id, history.read(version_id))
                previous = {**fields, "images": [{"name": i.name, "sha256": i.sha256} for i in images]}
                count += 1
            if live is None:
                history.mark_deleted({"pk": "", "deleted_at": None, "imported": True, "username": ""})
                index.mark_deleted(history, True)
            report.imported[key] = count
    return report


def _images(model: type[models.Model], fields: dict[str, Any], available: dict[str, Path]) -> list[collect.ImageFile]:
    images = []
    for name, source in collect.image_names(model, fields):
        path = available.get(Path(name).name)
        if path is None:
            images.append(collect.ImageFile(name, source, Path(name), None, 0))
        else:
            images.append(collect.ImageFile(name, source, path, collect.sha256_file(path), path.stat().st_size))
    return images


__all__ = ["META", "ImportReport", "import_tree"]
