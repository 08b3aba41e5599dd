"""The key an unattended drill opens backups with, without a human and without a secret in settings.

Scheduled backups are sealed for ``DBS_ADMIN["RECIPIENTS"]`` (public keys);
the drill needs the matching private key: an identity file named by
``DBS_ADMIN["DRILL_IDENTITY"]``, itself encrypted with a passphrase that
comes from the environment variable named by
``DBS_ADMIN["DRILL_IDENTITY_PASSPHRASE_ENV"]``. Settings hold a path and a
variable name, never the passphrase.
"""

from __future__ import annotations

import os

from dbs_admin.conf import dbs_settings
from dbs_admin.drills.errors import DrillKeyError
from dbs_admin.sealed import Identity, SealedError, load_identity


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
        raise DrillKeyError(
            "no key to open the backup: configure DBS_ADMIN['DRILL_IDENTITY'] (an identity file for the "
            "backup recipients, passphrase in $" + dbs_settings.DRILL_IDENTITY_PASSPHRASE_ENV
            + "), or give --passphrase-file / $DBS_PASSPHRASE / --identity"
        )
    return None, configured
