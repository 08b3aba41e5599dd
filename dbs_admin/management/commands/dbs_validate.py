"""``manage.py dbs_validate FILE [--decrypt]``: check a backup's structure, or decrypt and check everything."""

from __future__ import annotations

from django.core.management import CommandError, CommandParser

from dbs_admin.backups.validate import validate_backup
from dbs_admin.management.cli import DbsCommand, add_key_arguments, failures, read_key


class Command(DbsCommand):
    help = "Check a sealed backup: hashes and parity (no key), or with --decrypt every byte and the contents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path of a .dbs file, or a backup name on --target.")
        parser.add_argument("--target", help="Read the backup from this target.")
        parser.add_argument("--decrypt", action="store_true", help="Also decrypt and check rows and files.")
        add_key_arguments(parser, identity=True)

    def handle(self, *args, **options) -> None:
        with failures("validation"):
            key = read_key(options) if options["decrypt"] else {}
            result = validate_backup(options["file"], target=options["target"], decrypt=options["decrypt"], **key)
        if not result.ok:
            raise CommandError(f"validation failed: {result.message}", returncode=2)
        self.stdout.write(f"OK: {result.message}")  # it names the healed blocks and the margin left, if any
