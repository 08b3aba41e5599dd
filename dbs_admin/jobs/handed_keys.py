"""The key a job was handed: a passphrase, or an identity file plus the passphrase that unlocks it.

Why identities: scheduled backups are sealed to recipient keys only, so
restoring one needs the matching identity file. The file is itself encrypted
with a passphrase; it reaches the worker inside the sealed hand-off and is
written (still encrypted) to the job's private folder only for the moment
``load_identity`` reads it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dbs_admin.jobs import handoff
from dbs_admin.jobs.workspace import private_root
from dbs_admin.sealed import Identity, SealedError, load_identity

WRONG_IDENTITY_PASSPHRASE = "Wrong passphrase for the identity file: it does not unlock it."
NOT_AN_IDENTITY = "That file is not a dbs_admin identity file (see `python -m dbs_admin.sealed keygen`)."


class KeyRefused(Exception):
    """The identity file or its passphrase was refused; the message says which."""


def open_identity(text: bytes | str, passphrase: str) -> Identity:
    """Load an identity from its file's bytes (encrypted under ``passphrase``), via a private temp file."""
    from dbs_admin.sealed import WrongPassphraseError

    data = text.encode() if isinstance(text, str) else text
    folder = private_root() / "keys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{secrets.token_hex(12)}.identity"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return load_identity(Path(path), passphrase)
    except WrongPassphraseError:
        raise KeyRefused(WRONG_IDENTITY_PASSPHRASE) from None
    except SealedError:
        raise KeyRefused(NOT_AN_IDENTITY) from None
    finally:
        path.unlink(missing_ok=True)


class HandedKey:
    """The key a task was handed (a passphrase, or an identity file and its passphrase): read once from the
    hand-off, kept in this process's memory only, and sealed afresh if a transport error retries the task."""

    def __init__(self, ref: str | None, purpose: str) -> None:
        self.ref, self.purpose = ref, purpose
        self._held: tuple[str, str | None] | None = None

    def open(self):
        """``(passphrase, identity)``: the passphrase opens the backup itself when there is no identity."""
        if not self.ref:
            return None, None
        passphrase, identity_file = handoff.take_key(self.ref, purpose=self.purpose)
        self._held = (passphrase, identity_file)
        return passphrase, open_identity(identity_file, passphrase) if identity_file else None

    def fresh_ref(self) -> str | None:
        if self._held is None:
            return None
        return handoff.put_key(passphrase=self._held[0], identity_file=self._held[1], purpose=self.purpose)
