"""Where the commands get a passphrase: ``--passphrase-file``, then ``$DBS_PASSPHRASE``, then a prompt.

Why one function: every command must follow the same order and the same
rule for unattended runs (``--no-input`` or no terminal: never prompt), and
the passphrase must never be echoed, logged or put in an exception.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from dbs_admin.backups.errors import KeyMissingError

ENV = "DBS_PASSPHRASE"


def read_passphrase_file(path: str | os.PathLike[str]) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyMissingError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    passphrase = text.rstrip("\r\n")
    if not passphrase:
        raise KeyMissingError(f"the passphrase file {path} is empty")
    return passphrase


def can_prompt(no_input: bool) -> bool:
    return not no_input and sys.stdin is not None and sys.stdin.isatty()


def get_passphrase(
    *, passphrase_file: str | None = None, no_input: bool = False, confirm: bool = False, required: bool = True
) -> str | None:
    """The passphrase from the first source that has one; None when none has and ``required`` is False."""
    if passphrase_file:
        return read_passphrase_file(passphrase_file)
    env = os.environ.get(ENV)
    if env:
        return env
    if can_prompt(no_input):
        first = getpass.getpass("Passphrase: ")
        if confirm and getpass.getpass("Passphrase again: ") != first:
            raise KeyMissingError("the two passphrases differ; nothing was done")
        if first:
            return first
    if required:
        raise KeyMissingError(
            f"no passphrase: give --passphrase-file FILE or set ${ENV}"
            + (" (no prompt without a terminal or with --no-input)" if not can_prompt(no_input) else "")
        )
    return None
