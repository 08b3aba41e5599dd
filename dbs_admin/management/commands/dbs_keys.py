"""``manage.py dbs_keys init [--dir DIR]``: set up unattended backups and drills in one step.

Scheduled backups are sealed to public recipient keys (the server needs no
passphrase to write them); the weekly drill opens them with the matching
identity, whose passphrase the worker reads from its environment. This
command makes that pair, writes the identity encrypted (0600, in a 0700
folder) and prints the exact settings and environment lines to add.

The passphrase comes from ``$DBS_DRILL_IDENTITY_PASSPHRASE`` (the variable the
worker will read) or ``--passphrase-file``; without either a strong one is
generated and printed once: it is written nowhere.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

from django.core.management import CommandError, CommandParser

from dbs_admin.backups.errors import KeyMissingError
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.errors import DrillKeyError
from dbs_admin.drills.identity import create_drill_identity
from dbs_admin.management.cli import DbsCommand
from dbs_admin.management.passphrases import read_passphrase_file

MIN_PASSPHRASE = 12


def default_folder() -> Path:
    """Beside the site's other private files (never under MEDIA_ROOT, never backed up as media)."""
    return Path(dbs_settings.PRIVATE_ROOT) / "identity"


class Command(DbsCommand):
    help = ("Set up unattended backups and drills: create the recipient key pair and the drill identity, and "
            "print the settings and environment lines to add.")

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        init = sub.add_parser("init", help="create the key pair and the drill identity; print what to add")
        init.add_argument("--dir", help="Folder for the identity file (created 0700; default: "
                                        "DBS_ADMIN['PRIVATE_ROOT']/identity).")
        init.add_argument("--passphrase-file", help="Encrypt the identity with the passphrase in this file (else "
                          f"${dbs_settings.DRILL_IDENTITY_PASSPHRASE_ENV}, else a new one is generated and printed).")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_init(self, *, dir: str | None = None, passphrase_file: str | None = None, **_) -> None:
        env = dbs_settings.DRILL_IDENTITY_PASSPHRASE_ENV
        generated = False
        try:
            if passphrase_file:
                passphrase = read_passphrase_file(passphrase_file)
            elif os.environ.get(env):
                passphrase = os.environ[env]
            else:
                passphrase, generated = secrets.token_urlsafe(24), True
        except KeyMissingError as exc:
            raise CommandError(f"keys init failed: {exc}") from None
        if len(passphrase) < MIN_PASSPHRASE:
            raise CommandError(f"keys init failed: the identity's passphrase must have at least {MIN_PASSPHRASE} "
                               "characters (it guards every scheduled backup)")
        try:
            created = create_drill_identity(dir or default_folder(), passphrase)
        except DrillKeyError as exc:
            raise CommandError(f"keys init failed: {exc}") from None
        out = self.stdout
        out.write(f"Created the drill identity {created.identity_path} (encrypted, mode 0600) and its recipient "
                  f"{created.recipient_path}.")
        out.write("")
        out.write("1. Add to DBS_ADMIN in settings.py (scheduled backups are sealed to the recipient; drills open "
                  "them with the identity):")
        out.write("")
        out.write(f'    "RECIPIENTS": ["{created.recipient}"],')
        out.write(f'    "DRILL_IDENTITY": "{created.identity_path}",')
        out.write("")
        out.write("2. Add to the environment of the Celery worker (and of shells that run dbs_drill):")
        out.write("")
        where = f" in {passphrase_file}" if passphrase_file else f" of ${env}"
        shown = shlex.quote(passphrase) if generated else f"<the passphrase{where}>"
        out.write(f"    {env}={shown}")
        out.write("")
        out.write("3. Run `manage.py migrate` again: it turns the daily backup and the weekly drill on.")
        out.write("")
        out.write("Keep a copy of the identity file and its passphrase offline (a password manager, a safe): with "
                  "both, any scheduled backup can be restored on a new machine; without them, none can.")
        if generated:
            out.write("The passphrase above was generated for you and is written nowhere else.")
