"""Which keys seal a new backup: the one place that decides, and the one place that reads ``RECIPIENTS``.

Why one place: the console's form, the job that runs it, the command line
and the schedule all make backups. Each passes what it was given (a
passphrase, recipients, or neither) and this module applies the rule:
recipients given, else ``DBS_ADMIN["RECIPIENTS"]``; a passphrase and
recipients may both be used; with neither there is no backup
(KeyMissingError). The passphrase slot's Argon2id cost comes from
``DBS_ADMIN["ARGON2"]`` here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dbs_admin.backups.errors import KeyMissingError
from dbs_admin.conf import dbs_settings

if TYPE_CHECKING:
    from dbs_admin.sealed import Argon2Params

NO_KEY = ("no key to seal the backup: give a passphrase, or recipient public keys (DBS_ADMIN['RECIPIENTS'] "
          "seals unattended backups); nothing was written")


def recipients_or_default(recipients: Sequence[str] | None) -> list[str]:
    """The recipients given, else the configured ``DBS_ADMIN["RECIPIENTS"]`` (possibly empty)."""
    return list(recipients or ()) or list(dbs_settings.RECIPIENTS)


def can_seal_without_passphrase(recipients: Sequence[str] | None = None) -> bool:
    """True when a backup would be sealed to recipients if no passphrase were given (no prompt needed)."""
    return bool(recipients_or_default(recipients))


def argon2_params() -> tuple[Argon2Params, bool]:
    """Passphrase-slot cost from ``DBS_ADMIN["ARGON2"]``; ``allow_weak: True`` there permits cheap test costs.

    The keys module (Argon2, the AEAD) is imported here, when a backup is sealed, not when ``dbs_backup``'s
    module is loaded (``--help``, a refusal, and the console's start-up do not need it)."""
    from dbs_admin.sealed import Argon2Params

    conf = dict(dbs_settings.ARGON2)
    allow_weak = bool(conf.pop("allow_weak", False))
    return Argon2Params(**conf), allow_weak


@dataclass(frozen=True, repr=False)
class SealingKeys:
    """What the sealed writer takes (``as_writer_options()``); ``repr`` never shows the passphrase."""

    passphrase: str | None
    recipients: list[str] = field(default_factory=list)

    def as_writer_options(self) -> dict:
        params, allow_weak = argon2_params()
        return {"passphrase": self.passphrase, "recipients": list(self.recipients), "argon2": params,
                "allow_weak_argon2": allow_weak}

    def __repr__(self) -> str:
        return f"SealingKeys(passphrase={'***' if self.passphrase else None}, recipients={len(self.recipients)})"


def sealing_keys(passphrase: str | None, recipients: Sequence[str] | None) -> SealingKeys:
    """The keys of a new backup; KeyMissingError when there is neither a passphrase nor any recipient."""
    passphrase = passphrase or None
    chosen = list(recipients or ()) if passphrase else recipients_or_default(recipients)
    if not passphrase and not chosen:
        raise KeyMissingError(NO_KEY)
    return SealingKeys(passphrase, chosen)
