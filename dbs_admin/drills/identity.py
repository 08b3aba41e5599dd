"""The key an unattended drill opens backups with, without a human and without a secret in settings.

Scheduled backups are sealed for ``DBS_ADMIN["RECIPIENTS"]`` (public keys);
the drill needs the matching private key: an identity file named by
``DBS_ADMIN["DRILL_IDENTITY"]``, itself encrypted with a passphrase that
comes from the environment variable named by
``DBS_ADMIN["DRILL_IDENTITY_PASSPHRASE_ENV"]``. Settings hold a path and a
variable name, never the passphrase.

:func:`create_drill_identity` makes that set-up in one step (``manage.py
dbs_keys init``): the key pair, the identity file encrypted under a
passphrase the caller chose, and the recipient beside it in a public
``.recipient`` file so settings can read it.

Messages here name no command-line flag or form field: the command and the
console each add the way their user can give a key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dbs_admin.backups.sealing_keys import argon2_params
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.errors import DrillKeyError
from dbs_admin.sealed import Identity, SealedError, generate_identity, load_identity

NO_KEY = ("no key to open the backup: it needs a passphrase or an identity, and no drill identity is "
          "configured (DBS_ADMIN['DRILL_IDENTITY']; `manage.py dbs_keys init` sets one up)")
IDENTITY_NAME = "drill.identity"
RECIPIENT_SUFFIX = ".recipient"


def identity_from_file(path: str, *, env: str | None = None) -> Identity:
    env = env or dbs_settings.DRILL_IDENTITY_PASSPHRASE_ENV
    passphrase = os.environ.get(env)
    if not passphrase:
        raise DrillKeyError(
            f"the drill identity {path} is encrypted; set the environment variable {env} to its passphrase "
            "for the worker (and the shell running dbs_drill)"
        )
    try:
        return load_identity(path, passphrase)
    except SealedError as exc:
        raise DrillKeyError(f"cannot use the drill identity: {exc}") from None


def configured_identity() -> Identity | None:
    """The identity of ``DRILL_IDENTITY``, or None when none is configured."""
    path = dbs_settings.DRILL_IDENTITY
    return identity_from_file(str(path)) if path else None


def resolve_key(passphrase: str | None, identity: Identity | str | None) -> tuple[str | None, Identity | None]:
    """Explicit passphrase or identity first, then the configured drill identity; else DrillKeyError."""
    if isinstance(identity, str | os.PathLike):
        identity = identity_from_file(str(identity))
    if passphrase or identity is not None:
        return passphrase or None, identity
    configured = configured_identity()
    if configured is None:
        raise DrillKeyError(NO_KEY)
    return None, configured


def drill_identity_configured() -> bool:
    """True when unattended drills have a key (the setting; its passphrase is the worker's environment)."""
    return bool(dbs_settings.DRILL_IDENTITY)


@dataclass(frozen=True)
class CreatedIdentity:
    identity_path: Path
    recipient_path: Path
    recipient: str


def create_drill_identity(folder: str | os.PathLike[str], passphrase: str) -> CreatedIdentity:
    """A new key pair in ``folder`` (0700): the identity encrypted under ``passphrase`` (0600) and its recipient.

    Never overwrites: an identity that sealed backups are waiting for must not
    be replaced by accident (DrillKeyError names the file).
    """
    folder = Path(folder).absolute()
    identity_path = folder / IDENTITY_NAME
    recipient_path = folder / (IDENTITY_NAME + RECIPIENT_SUFFIX)
    if identity_path.exists() or recipient_path.exists():
        raise DrillKeyError(
            f"{identity_path} already exists: backups sealed for it would become unreadable if it were replaced. "
            "Keep it, or choose another folder."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DrillKeyError(f"cannot create the folder {folder}: {exc.strerror}") from None
    params, allow_weak = argon2_params()
    try:
        identity = generate_identity(identity_path, passphrase, argon2=params, allow_weak=allow_weak)
    except SealedError as exc:
        raise DrillKeyError(f"cannot create the drill identity: {exc}") from None
    recipient_path.write_text(identity.recipient + "\n", encoding="ascii")
    return CreatedIdentity(identity_path, recipient_path, identity.recipient)
