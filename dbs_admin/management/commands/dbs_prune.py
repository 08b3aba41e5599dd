"""``manage.py dbs_prune [--target NAME] [--dry-run]``: apply the retention policy; ``--gc``: collect garbage.

Prints every backup with the rule that keeps it, or says it is deleted,
so an operator can check a policy with ``--dry-run`` before trusting it.
Any failure is one line on stderr and a non-zero exit; without ``--target``
the other targets are still pruned first.

On a repository target the retention forgets snapshots (keyless: their records
go, so a host holding only recipients can prune); their space comes back when
garbage is collected, which reads every kept snapshot's chunk lists and so needs
the key: ``dbs_prune --gc [--target NAME]`` runs that collection alone (no
retention), on the repository targets, waiting up to ``--wait`` seconds for
backups in progress. A flag of dbs_prune rather than a command of its own: it is
the second half of pruning, on the same targets, and a cron line can run the
two in turn with the key given only to the second.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser

from dbs_admin.backups.retention import prune
from dbs_admin.conf import dbs_settings
from dbs_admin.errors import DbsError
from dbs_admin.management.cli import DbsCommand, add_key_arguments, failures, read_key


class Command(DbsCommand):
    help = "Delete old backups by the retention policy (keep last N + daily/weekly/monthly)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", help="Target name from DBS_ADMIN['TARGETS'] (default: all targets).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be kept and deleted; delete nothing."
        )
        parser.add_argument("--gc", action="store_true", help="Repository targets: reclaim the space of forgotten "
                            "snapshots (needs the key; no retention is applied).")
        parser.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                            help="With --gc: wait this long for backups in progress (default 600).")
        add_key_arguments(parser, identity=True)

    def handle(self, *args: Any, target: str | None = None, dry_run: bool = False, **options: Any) -> None:
        if options.get("gc"):
            if dry_run:
                raise CommandError("--gc and --dry-run: a collection has no dry run (dbs_list shows each "
                                   "snapshot's size)")
            self._collect(target, options)
            return
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

    def _collect(self, target: str | None, options: dict[str, Any]) -> None:
        from dbs_admin.backups.repository import collect_garbage
        from dbs_admin.targets import get_target
        from dbs_admin.targets.repository import is_repository

        with failures("garbage collection"):
            if target:
                chosen = [get_target(target)]
                if not is_repository(chosen[0]):
                    raise CommandError(f"target {target!r} holds sealed files, not a repository: --gc has nothing "
                                       "to collect there (dbs_prune deletes its files at once)")
            else:
                chosen = [t for t in (get_target(n) for n in dbs_settings.TARGETS) if is_repository(t)]
                if not chosen:
                    raise CommandError("no repository target is configured: --gc has nothing to collect")
            for each in chosen:
                key = read_key(options, source=None, target=each.name)
                before = each.total_size()
                report = collect_garbage(each, passphrase=key["passphrase"], identity=key["identity"],
                                         wait=options["wait"])
                self.stdout.write(
                    f"target {each.name!r}: collected: {report.packs_deleted} pack(s) deleted, "
                    f"{report.packs_repacked} repacked, {report.bytes_freed} bytes freed; "
                    f"{report.live_chunks} chunks kept; repository {before} -> {each.total_size()} bytes")
