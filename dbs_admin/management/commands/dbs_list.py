"""``manage.py dbs_list [--target NAME] [--json]``: the sealed backups each target holds.

Verified state comes from the console's records (a ``Backup`` row's status)
when there is one; a copy without a record shows "unknown" rather than a
guess. Without ``--target`` every configured target is listed; one that
fails is reported on stderr and the command exits non-zero after listing
the others, so a cron job notices an unreachable offsite target.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser

from dbs_admin.errors import DbsError
from dbs_admin.management.cli import DbsCommand
from dbs_admin.models import Backup
from dbs_admin.targets import Target, get_target, iter_targets
from dbs_admin.targets.naming import parse_backup_file_name


def _row(target: Target, stored: Any, statuses: dict[str, str]) -> dict[str, Any]:
    parsed = parse_backup_file_name(stored.name)
    return {
        "target": target.name,
        "name": stored.name,
        "size": stored.size,
        "created_at": stored.created_at.isoformat(),
        "kind": parsed[1] if parsed else None,
        "label": parsed[2] if parsed else None,
        "sha256": stored.sha256,
        "status": statuses.get(stored.name, "unknown"),
    }


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class Command(DbsCommand):
    help = "List the sealed backups held by one target (--target) or by every configured target."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", help="Target name from DBS_ADMIN['TARGETS'] (default: all targets).")
        parser.add_argument("--json", action="store_true", help="Print a JSON list instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        target = options.get("target")
        try:
            targets = [get_target(target)] if target else list(iter_targets())
        except (DbsError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        statuses = dict(Backup.objects.values_list("name", "status"))
        rows: list[dict[str, Any]] = []
        failures: list[str] = []
        for each in targets:
            try:
                listed = [_row(each, stored, statuses) for stored in each.list()]
                totals = getattr(each, "totals", None)  # a repository: size is what a snapshot added
                if totals is not None:
                    running = totals()
                    for row in listed:
                        row["total"] = running.get(row["name"])
                rows.extend(listed)
            except DbsError as exc:
                failures.append(f"target {each.name!r}: {exc}")
        self._print(rows, as_json=bool(options.get("json")))
        for failure in failures[:-1]:
            self.stderr.write(failure)
        if failures:
            raise CommandError(failures[-1])

    def _print(self, rows: list[dict[str, Any]], *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No backups.")
            return
        for row in rows:
            sha = (row["sha256"] or "-")[:12]
            total = f"  added, total {_human_size(row['total'])}" if row.get("total") is not None else ""
            self.stdout.write(
                f"{row['target']:<10} {row['name']:<60} {_human_size(row['size']):>10}  "
                f"{row['created_at'][:19]}Z  {row['status']:<10} {sha}{total}"
            )
