"""``manage.py dbs_prune [--target NAME] [--dry-run]``: apply the retention policy.

Prints every backup with the rule that keeps it, or says it is deleted,
so an operator can check a policy with ``--dry-run`` before trusting it.
Any failure is one line on stderr and a non-zero exit; without ``--target``
the other targets are still pruned first.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser

from dbs_admin.backups.retention import prune
from dbs_admin.conf import dbs_settings
from dbs_admin.errors import DbsError
from dbs_admin.management.cli import DbsCommand


class Command(DbsCommand):
    help = "Delete old backups by the retention policy (keep last N + daily/weekly/monthly)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", help="Target name from DBS_ADMIN['TARGETS'] (default: all targets).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be kept and deleted; delete nothing."
        )

    def handle(self, *args: Any, target: str | None = None, dry_run: bool = False, **options: Any) -> None:
        # Every target is tried, so an unreachable offsite server does not stop the local folder from being
        # pruned; any failure still ends the command with a non-zero exit.
        failures: list[str] = []
        for name in [target] if target else list(dbs_settings.TARGETS):
            try:
                self._prune_one(name, dry_run)
            except (DbsError, ImproperlyConfigured) as exc:
                failures.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        for failure in failures[:-1]:
            self.stderr.write(failure)
        if failures:
            raise CommandError(failures[-1])

    def _prune_one(self, name: str, dry_run: bool) -> None:
        plan = prune(name, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for kept in plan.keep:
            self.stdout.write(f"keep    {kept}  ({'; '.join(plan.reasons[kept])})")
        for gone in plan.delete:
            self.stdout.write(f"{'delete' if dry_run else 'deleted':<7} {gone}  ({'; '.join(plan.reasons[gone])})")
        summary = f"target {name!r}: kept {len(plan.keep)}, {verb} {len(plan.delete)}"
        self.stdout.write(summary + (" (dry run: nothing was deleted)" if dry_run else ""))
