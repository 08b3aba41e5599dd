"""What the commands share: a base class, key options, the progress display, one clear line on failure.

Why: ``dbs_backup``, ``dbs_restore`` and ``dbs_validate`` must read keys in
the same order, never prompt when unattended, draw the same progress bar on
a terminal (quiet lines in logs), and turn every failure into a non-zero
exit with a single line saying what failed. Every ``dbs_*`` command is a
:class:`DbsCommand`: it accepts ``--no-input``/``--noinput`` like Django's own
commands, and runs no system checks (``requires_system_checks = []``).

Why no checks: they guard the web site (URLs, templates, the admin, static files, security settings) or
the models' definitions, and loading the URLconf for the URL check imports every page of the console, a
tenth of a second or more at each start: a backup run by cron every hour pays for it each time and learns
nothing. What protects a backup's or a restore's user is checked by the command itself, where it matters
(keys, migrations, target settings, the backup's own integrity), with one clear line. dbs_admin's own
checks were already left out: W001-W003 say what ``dbs_backup`` fixes and ``dbs_status`` reports, W004
(per-host folders) is about workers. ``manage.py check`` and ``runserver`` still run every check.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from django.core.management import BaseCommand, CommandError, CommandParser

from dbs_admin.backups.errors import KeyMissingError
from dbs_admin.errors import DbsError
from dbs_admin.management.passphrases import can_prompt, get_passphrase
from dbs_admin.sealed import SealedError
from dbs_admin.sealed.errors import KeySlotError, WrongIdentityError, WrongPassphraseError

NO_INPUT_FLAGS = ("--no-input", "--noinput")
NO_INPUT_HELP = "Never prompt: fail at once when something must be typed (a key, a confirmation)."


class DbsCommand(BaseCommand):
    """Base of every ``dbs_*`` command: ``--no-input``/``--noinput`` everywhere, no system checks (see above)."""

    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        add_no_input(parser)
        if "--skip-checks" not in parser._option_string_actions:
            # Django offers --skip-checks only to commands that run checks; scripts (and call_command(...,
            # skip_checks=...)) that passed it before must still work: accepted, and there is nothing to skip.
            parser.add_argument("--skip-checks", action="store_true", help=argparse.SUPPRESS)
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        """The command line's entry (``manage.py dbs_...``), whose process ends with the command: what start-up
        made (Django, the apps, every module imported) is frozen out of the cyclic garbage collector first.

        Why: those objects live until the process exits, yet every full collection walks all of them again,
        and so does the interpreter's teardown, several times (a fifth of a second at the end of a backup here,
        after its last line). Frozen, they are skipped; what the command itself makes is collected as before.
        Only here: ``call_command`` (a worker, the tests) runs in a process that goes on, and keeps its heap as
        it was.
        """
        gc.freeze()
        super().run_from_argv(argv)


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


PASSPHRASE_FLAGS = "--passphrase-file FILE or $DBS_PASSPHRASE"
IDENTITY_FLAGS = "--identity FILE (its passphrase from --passphrase-file FILE or $DBS_PASSPHRASE)"


def key_kinds(source: str | None, target: str | None) -> set[str] | None:
    """The kinds of key slot of a backup (``passphrase``, ``recipient``), when its header can be read here
    without downloading it (a path, or a local target); None when it cannot be known cheaply."""
    from dbs_admin.sealed import info
    from dbs_admin.targets import get_target

    if not source:
        return None
    try:
        path = Path(source)
        if not (target is None and (path.exists() or path.name != str(source))):  # a name on a target
            path = get_target(target).local_path(path.name)  # None: a remote target (not fetched for a hint)
        if path is None or not path.is_file():
            return None
        return {slot["type"] for slot in info(path)["key_slots"]}
    except Exception:  # noqa: BLE001 - a hint only: the restore itself says what is wrong with the file
        return None


def key_flags(kinds: set[str] | None) -> str:
    """The flags that give the key this backup's slots take."""
    if kinds == {"recipient"}:
        return f"{IDENTITY_FLAGS}: the backup is sealed to recipient keys only"
    if kinds == {"passphrase"}:
        return f"{PASSPHRASE_FLAGS}: the backup is sealed with a passphrase only"
    return f"{PASSPHRASE_FLAGS} (a passphrase slot), or {IDENTITY_FLAGS} (a recipient slot)"


def read_key(options: dict[str, Any], *, required: bool = True, source: str | None = None,
             target: str | None = None) -> dict[str, Any]:
    """``{"passphrase": ..., "identity": ...}`` for reading a backup, from the options and the environment.

    Without ``--identity``: the passphrase from the file or the environment, else a prompt, unless the
    backup is recipient-only (a passphrase could not open it); a missing key names the flags that fit
    the backup's key slots (``source``/``target`` say which backup).
    """
    no_input = options["no_input"]
    if options.get("identity"):
        from dbs_admin.sealed import load_identity  # here: the keys module (Argon2, the AEAD) is not start-up's

        passphrase = get_passphrase(passphrase_file=options.get("passphrase_file"), no_input=no_input)
        return {"passphrase": None, "identity": load_identity(options["identity"], passphrase)}
    passphrase = get_passphrase(passphrase_file=options.get("passphrase_file"), no_input=True, required=False)
    if passphrase is None and required:
        kinds = key_kinds(source, target)
        if kinds != {"recipient"}:  # a prompt for a passphrase that could not open it helps nobody
            passphrase = get_passphrase(no_input=no_input, required=False)
        if passphrase is None:
            raise KeyMissingError(f"no key to open the backup: give {key_flags(kinds)}"
                                  + ("" if can_prompt(no_input) else " (no prompt without a terminal or with "
                                                                     "--no-input)"))
    return {"passphrase": passphrase, "identity": None}


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
        raise CommandError(f"{what} failed: {_one_line(exc)}{_other_kind_of_key(exc)}", returncode=code) from exc
    finally:
        if display is not None:
            display.end()


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _other_kind_of_key(exc: Exception) -> str:
    """The flag to use instead, when the key given is of a kind the backup has no slot for at all."""
    if isinstance(exc, WrongPassphraseError) and exc.no_slot_of_that_kind:
        return f" (use {IDENTITY_FLAGS})"
    if isinstance(exc, WrongIdentityError) and exc.no_slot_of_that_kind:
        return f" (leave out --identity: {PASSPHRASE_FLAGS})"
    return ""


Callback = Callable[[str, int, "int | None"], None]
