"""``manage.py dbs_backup``: write a sealed backup to a target (or a file), verified and recorded."""

from __future__ import annotations

from django.core.management import CommandError, CommandParser

from dbs_admin.backups.errors import KeyMissingError
from dbs_admin.backups.sealing_keys import can_seal_without_passphrase
from dbs_admin.management.cli import DbsCommand, ProgressDisplay, add_key_arguments, failures
from dbs_admin.management.passphrases import get_passphrase


class Command(DbsCommand):
    help = "Back up the database and media into a sealed, encrypted, self-healing .dbs file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", choices=["logical", "native"], default="logical")
        parser.add_argument("--target", action="append", default=[],
                            help="Target name from DBS_ADMIN['TARGETS'] (default: DEFAULT_TARGET); repeat it for a "
                                 "copy on each target, every copy verified on its own.")
        parser.add_argument("--output", help="Write to this file instead of a target (never overwritten).")
        parser.add_argument("--label", default="", help="A short label, also part of the file name.")
        parser.add_argument("--recipient", action="append", default=[], help="X25519 recipient (dbs1...); "
                            "repeatable. Without a passphrase, DBS_ADMIN['RECIPIENTS'] are used.")
        parser.add_argument("--database", default="default", help="Database alias to back up.")
        add_key_arguments(parser, identity=False)

    def handle(self, *args, **options) -> None:
        # Here, not at import: the capture and the sealed writer (numpy) are not needed for --help or a refusal.
        from dbs_admin.backups.create import create_backup

        display = ProgressDisplay(enabled=options["verbosity"] > 0)
        with failures("backup", display):
            passphrase = self._passphrase(options)
            try:
                result = create_backup(
                    kind=options["kind"], target=options["target"] or None, output=options["output"],
                    label=options["label"], passphrase=passphrase, recipients=options["recipient"] or None,
                    database=options["database"], progress=display,
                )
            except KeyMissingError as exc:  # the service's rule, with the flags that satisfy it here
                raise KeyMissingError(f"{exc} (--passphrase-file FILE, $DBS_PASSPHRASE, or --recipient)") from None
        where = f"target {', '.join(result.targets)}" if result.targets else str(result.path)
        self.stdout.write(f"{result.name}: {result.kind}, {result.size} bytes, sha256 {result.sha256}, "
                          f"verified, on {where}")
        # A copy that failed fails the command (cron must notice), after saying which copies are good.
        lines = [f"backup failed on target {t!r} (the other copies are stored): {why}"
                 for t, why in result.failed.items()]
        for line in lines[:-1]:
            self.stderr.write(line)
        if lines:
            raise CommandError(lines[-1])

    def _passphrase(self, options) -> str | None:
        """File, then $DBS_PASSPHRASE, then a prompt; no prompt when recipients will hold the key."""
        no_input = options["no_input"] or can_seal_without_passphrase(options["recipient"])
        return get_passphrase(passphrase_file=options["passphrase_file"], no_input=no_input, confirm=True,
                              required=False)
