"""``manage.py dbs_history``: list, show, diff, restore, import, reindex and snapshot per-object history."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from dbs_admin.history import diff as history_diff
from dbs_admin.history import importer, index
from dbs_admin.history.api import take_baseline
from dbs_admin.history.collect import model_for_label, model_label
from dbs_admin.history.errors import HistoryError
from dbs_admin.history.revert import find_history, restore
from dbs_admin.history.snapshot import describe_summary, history_root
from dbs_admin.history.store import META
from dbs_admin.management.cli import DbsCommand
from dbs_admin.models import HistoryVersion
from dbs_admin.registry import registry


class Command(DbsCommand):
    help = ("Per-object version history: list, show, diff, restore (--dry-run), import PATH, reindex, snapshot "
            "(a first version of every object that has none).")

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("list", help="objects with history, or the versions of one object")
        p.add_argument("model")
        p.add_argument("key", nargs="?")
        p = sub.add_parser("show", help="print a version's json (default: the newest)")
        p.add_argument("model")
        p.add_argument("key")
        p.add_argument("--version")
        p = sub.add_parser("diff", help="unified diff between two versions")
        p.add_argument("model")
        p.add_argument("key")
        p.add_argument("v1")
        p.add_argument("v2")
        p = sub.add_parser("restore", help="restore an object (also a deleted one) to a version")
        p.add_argument("model")
        p.add_argument("key")
        p.add_argument("--version")
        p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
        p = sub.add_parser("import", help="adopt a tree of the layout <key>/post.json + updates/update_*/")
        p.add_argument("path")
        p.add_argument("--model", help="app_label.Model the tree belongs to (needed when several are tracked)")
        sub.add_parser("reindex", help="rebuild the history index from the tree")
        p = sub.add_parser("snapshot", help="a first version of every existing object that has none (a baseline, "
                                            "like django-reversion's createinitialrevisions)")
        p.add_argument("--model", action="append", help="only this app_label.Model (repeatable; default: every "
                                                        "tracked model)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except HistoryError as exc:
            raise CommandError(str(exc)) from exc

    def do_list(self, model: str, key: str | None = None, **_: Any) -> None:
        model_cls = model_for_label(model)
        if key is None:
            rows = HistoryVersion.objects.filter(model_label=model_label(model_cls)).order_by("object_key")
            seen: dict[str, tuple[int, bool]] = {}
            for row in rows.values("object_key", "object_deleted"):
                count, _ = seen.get(row["object_key"], (0, False))
                seen[row["object_key"]] = (count + 1, row["object_deleted"])
            for obj_key, (count, deleted) in seen.items():
                self.stdout.write(f"{obj_key}\t{count} versions" + ("\tdeleted" if deleted else ""))
            return
        history = find_history(model_cls, key)
        for version_id in history.versions():
            meta = history.read(version_id).get(META, {})
            self.stdout.write(f"{version_id}\t{meta.get('written_at', '')}\t{meta.get('username') or '-'}\t"
                              f"{describe_summary(meta.get('summary') or {})}")

    def do_show(self, model: str, key: str, version: str | None = None, **_: Any) -> None:
        history = find_history(model_for_label(model), key)
        version = version or history.versions()[-1]
        self.stdout.write(json.dumps(history.read(version), ensure_ascii=False, indent=2))

    def do_diff(self, model: str, key: str, v1: str, v2: str, **_: Any) -> None:
        model_cls = model_for_label(model)
        history = find_history(model_cls, key)
        related = {f.name for f in model_cls._meta.many_to_many}
        self.stdout.write(history_diff.unified_text(history.read(v1), history.read(v2), related, (v1, v2)), ending="")

    def do_restore(self, model: str, key: str, version: str | None = None, dry_run: bool = False, **_: Any) -> None:
        plan, result = restore(model_for_label(model), key, version, dry_run=dry_run)
        for line in plan.lines():
            self.stdout.write(("[dry run] " if dry_run else "") + line)
        if result is not None:
            self.stdout.write(self.style.SUCCESS(
                f"restored {plan.model._meta.label} pk={result.obj.pk} ({result.images_written} images written)"
            ))

    def do_import(self, path: str, model: str | None = None, **_: Any) -> None:
        if model:
            model_cls = model_for_label(model)
        elif len(registry.history) == 1:
            model_cls = next(iter(registry.history))
        else:
            raise CommandError("Several models keep history; name the one this tree belongs to with --model app.Model.")
        report = importer.import_tree(path, model_cls)
        for line in report.lines():
            self.stdout.write(line)

    def do_snapshot(self, model: list[str] | None = None, **_: Any) -> None:
        models_ = [model_for_label(m) for m in model] if model else None
        for label, count in take_baseline(models_).items():
            self.stdout.write(f"{label}: {count} object(s) without a version got their first one")

    def do_reindex(self, **_: Any) -> None:
        basenames = {model_label(m): m._meta.model_name for m in registry.history}
        count = index.reindex(history_root(), basenames)
        self.stdout.write(self.style.SUCCESS(f"indexed {count} versions from {history_root()}"))

