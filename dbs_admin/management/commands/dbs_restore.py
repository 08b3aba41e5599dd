"""``manage.py dbs_restore FILE|--latest``: restore a backup, whole or in part, all or nothing."""

from __future__ import annotations

from django.core.management import CommandError, CommandParser

from dbs_admin.backups.restore import restore_backup
from dbs_admin.backups.safety import back_up_before_restore
from dbs_admin.backups.sources import latest_name
from dbs_admin.management.cli import DbsCommand, ProgressDisplay, add_key_arguments, failures, read_key
from dbs_admin.management.passphrases import can_prompt


class Command(DbsCommand):
    help = "Restore a sealed backup into a database (all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="Path of a .dbs file, or a backup name on --target.")
        parser.add_argument("--latest", action="store_true", help="Restore the newest backup of the target.")
        parser.add_argument("--target", help="Target to read the backup from.")
        parser.add_argument("--database", default="default", help="Database alias to restore into.")
        parser.add_argument("--models", nargs="+", metavar="APP.MODEL", help="Restore only these models.")
        parser.add_argument("--object", action="append", dest="objects", metavar="APP.MODEL:PK",
                            help="Restore only this object (repeatable).")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument("--reset", action="store_true", help="Drop and recreate the schema first "
                            "(asks for confirmation; with --no-input also give --yes).")
        parser.add_argument("--yes", action="store_true", help="Confirm --reset without a prompt.")
        parser.add_argument("--allow-migration-mismatch", action="store_true",
                            help="Restore even if the backup's migrations differ from the code's.")
        parser.add_argument("--safety-backup", metavar="TARGET",
                            help="First back up the current data to TARGET, sealed with the same key, so this "
                                 "restore can be undone (skipped with --dry-run).")
        add_key_arguments(parser, identity=True)

    def handle(self, *args, **options) -> None:
        if bool(options["file"]) == bool(options["latest"]):
            raise CommandError("give a backup FILE or --latest (not both)")
        display = ProgressDisplay(enabled=options["verbosity"] > 0)
        with failures("restore", display):
            source = options["file"] or latest_name(options["target"])
            target = options["target"] if (options["latest"] or options["target"]) else None
            key = read_key(options, source=source, target=target)
            if options["reset"] and not options["dry_run"]:
                self._confirm_reset(options)

            def safety_backup() -> None:
                safety = back_up_before_restore(
                    options["safety_backup"], database=options["database"], passphrase=key.get("passphrase"),
                    identity=key.get("identity"), label="before restore", progress=display,
                )
                self.stdout.write(f"backed up the current data first: {safety.name} on {options['safety_backup']!r}")

            result = restore_backup(
                source, target=target, database=options["database"], models=options["models"],
                objects=options["objects"], dry_run=options["dry_run"], reset=options["reset"],
                allow_migration_mismatch=options["allow_migration_mismatch"], progress=display,
                before_writing=safety_backup if options["safety_backup"] else None, **key,
            )
        for line in result.changes:
            self.stdout.write(line)  # a dry run's lines already say "would"
        verb = "dry run of" if result.dry_run else "restored"
        healed = f", {result.healed_blocks} damaged block(s) healed" if result.healed_blocks else ""
        origin = f" (read from {result.source})" if result.source.startswith("target") else ""
        self.stdout.write(f"{verb} {source}{origin} into {result.database!r}: {sum(result.rows.values())} rows, "
                          f"{result.files} files in {result.seconds:.1f}s{healed}")

    def _confirm_reset(self, options) -> None:
        database = options["database"]
        if options["yes"]:
            return
        if not can_prompt(options["no_input"]):
            raise CommandError("--reset drops every table of the database: confirm with --yes when not interactive")
        answer = input(f"--reset drops EVERY table of database {database!r} and migrates it afresh before "
                       f"restoring (the console's own records are set aside and put back). Type 'reset' to continue: ")
        if answer.strip() != "reset":
            raise CommandError("reset not confirmed; nothing was changed")
