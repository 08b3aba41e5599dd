"""``manage.py dbs_validate FILE [--decrypt]``: check a backup's structure, or decrypt and check everything.

Exit status as the rescue CLI's ``verify`` (``python -m dbs_admin.sealed``): 0 intact, 1 damaged but healed
(every byte recoverable: run ``heal``, or take another copy), 2 unrecoverable or not a backup, 3 wrong or
missing key. ``--identity`` or ``--passphrase-file`` mean "decrypt": a key is never given for nothing.
"""

from __future__ import annotations

from django.core.management import CommandError, CommandParser

from dbs_admin.backups.validate import validate_backup
from dbs_admin.management.cli import DbsCommand, add_key_arguments, failures, read_key


class Command(DbsCommand):
    help = "Check a sealed backup: hashes and parity (no key), or with --decrypt every byte and the contents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path of a .dbs file, or a backup name on --target.")
        parser.add_argument("--target", help="Read the backup from this target.")
        parser.add_argument("--decrypt", action="store_true", help="Also decrypt and check rows and files "
                            "(implied by --identity and --passphrase-file).")
        add_key_arguments(parser, identity=True)

    def handle(self, *args, **options) -> None:
        decrypt = bool(options["decrypt"] or options.get("identity") or options.get("passphrase_file"))
        with failures("validation"):
            key = read_key(options, source=options["file"], target=options["target"]) if decrypt else {}
            result = validate_backup(options["file"], target=options["target"], decrypt=decrypt, **key)
        if not result.ok:
            raise CommandError(f"validation failed: {result.message}", returncode=2)
        self.stdout.write(f"OK: {result.message}")  # it names the healed blocks and the margin left, if any
        if result.exit_code:  # damaged but recoverable: fine to restore from, but tell cron
            raise SystemExit(result.exit_code)
