"""What the commands share: a base class, key options, the progress display, one clear line on failure.

Why: ``dbs_backup``, ``dbs_restore`` and ``dbs_validate`` must read keys in
the same order, never prompt when unattended, draw the same progress bar on
a terminal (quiet lines in logs), and turn every failure into a non-zero
exit with a single line saying what failed. Every ``dbs_*`` command is a
:class:`DbsCommand`: it accepts ``--no-input``/``--noinput`` like Django's own
commands, and skips dbs_admin's recoverability check (W001-W003), which is
about what these commands do or report themselves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from django.core import checks
from django.core.management import BaseCommand, CommandError, CommandParser

from dbs_admin.backups.errors import KeyMissingError
from dbs_admin.errors import DbsError
from dbs_admin.management.passphrases import get_passphrase
from dbs_admin.sealed import SealedError, load_identity
from dbs_admin.sealed.errors import KeySlotError

NO_INPUT_FLAGS = ("--no-input", "--noinput")
NO_INPUT_HELP = "Never prompt: fail at once when something must be typed (a key, a confirmation)."
RECOVERABILITY_TAG = "dbs_admin"  # drills.system_checks.TAG (W001-W003)


class DbsCommand(BaseCommand):
    """Base of every ``dbs_*`` command: ``--no-input``/``--noinput`` everywhere, no recoverability warnings."""

    @property
    def requires_system_checks(self) -> list[str]:  # every registered check but ours (read at execute())
        return [tag for tag in checks.registry.registry.tags_available() if tag != RECOVERABILITY_TAG]

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        add_no_input(parser)
        return parser


def add_no_input(parser: CommandParser) -> None:
    """``--no-input``/``--noinput`` on the parser and on each sub-command's, unless it has it already."""
    if "--no-input" not in parser._option_string_actions:
        parser.add_argument(*NO_INPUT_FLAGS, action="store_true", dest="no_input", help=NO_INPUT_HELP)
    for action in parser._actions:
        for sub in (getattr(action, "choices", None) or {}).values() if action.nargs == "A..." else ():
            if "--no-input" not in sub._option_string_actions:
                # SUPPRESS: a sub-command must not reset a --no-input given before it.
                sub.add_argument(*NO_INPUT_FLAGS, action="store_true", dest="no_input", default=argparse.SUPPRESS,
                                 help=NO_INPUT_HELP)


def add_key_arguments(parser: CommandParser, *, identity: bool) -> None:
    parser.add_argument("--passphrase-file", help="Read the passphrase from this file (else $DBS_PASSPHRASE, "
                        "else a prompt on a terminal).")
    if identity:
        parser.add_argument("--identity", help="An X25519 identity file (its own passphrase is read the same way).")
    parser.add_argument(*NO_INPUT_FLAGS, action="store_true", dest="no_input", help=NO_INPUT_HELP)


def read_key(options: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    """``{"passphrase": ..., "identity": ...}`` for reading a backup, from the options and the environment."""
    passphrase = get_passphrase(passphrase_file=options.get("passphrase_file"), no_input=options["no_input"],
                                required=required and not options.get("identity"))
    identity = None
    if options.get("identity"):
        if passphrase is None:
            passphrase = get_passphrase(passphrase_file=options.get("passphrase_file"), no_input=options["no_input"])
        identity = load_identity(options["identity"], passphrase)
        passphrase = None
    return {"passphrase": passphrase, "identity": identity}


class ProgressDisplay:
    """A bar on a terminal (stderr), one line per stage otherwise."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self._stage: str | None = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.tty:
            if total:
                width = 30
                filled = int(width * min(done, total) / total)
                text = f"\r{stage:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
            else:
                text = f"\r{stage:<10} {done}"
            self.stream.write(text.ljust(60))
            if stage == "done":
                self.stream.write("\n")
            self.stream.flush()
        elif stage != self._stage:
            self.stream.write(f"{stage}...\n")
            self.stream.flush()
        self._stage = stage

    def end(self) -> None:
        if self.enabled and self.tty and self._stage not in (None, "done"):
            self.stream.write("\n")


@contextmanager
def failures(what: str, display: ProgressDisplay | None = None) -> Iterator[None]:
    """Turn our errors into CommandError (one line, non-zero exit); the message names the failure."""
    try:
        yield
    except (DbsError, SealedError) as exc:
        if display is not None:
            display.end()
        code = 3 if isinstance(exc, (KeySlotError, KeyMissingError)) else 1
        raise CommandError(f"{what} failed: {_one_line(exc)}", returncode=code) from exc
    finally:
        if display is not None:
            display.end()


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


Callback = Callable[[str, int, "int | None"], None]
