"""Exceptions of the sealed container.

Every failure a user can meet is one of these, so callers (the CLI, the
Django layer, the admin) can tell a wrong passphrase from a damaged file
without parsing messages. Messages say what happened and what to do.
This module imports nothing from Django.
"""

from __future__ import annotations


class SealedError(Exception):
    """Base class of every error raised by ``dbs_admin.sealed``."""


class NotSealedError(SealedError):
    """The file is not a sealed backup at all (foreign, empty or unknown magic)."""


class UnsupportedVersionError(SealedError):
    """The file is a sealed backup of a format version this code cannot read."""


class KeySlotError(SealedError):
    """Base for key problems: no key given, or the given one opens no slot.

    ``no_slot_of_that_kind`` is True when the file has no slot of the kind of key given at all (a passphrase
    for a recipient-only file, an identity for a passphrase-only one): callers then name the other kind.
    """

    def __init__(self, message: str = "", *, no_slot_of_that_kind: bool = False):
        super().__init__(message)
        self.no_slot_of_that_kind = no_slot_of_that_kind


class NoKeyError(KeySlotError):
    """Decryption was asked for but no passphrase or identity that fits was given."""


class WrongPassphraseError(KeySlotError):
    """The passphrase does not open any passphrase slot of this file."""


class WrongIdentityError(KeySlotError):
    """The identity (private key) does not open any recipient slot of this file."""


class KeySlotFormatError(SealedError):
    """The key slots are malformed (truncated, wrong sizes) or ask for hostile
    Argon2 costs that this reader refuses before computing anything."""


class AuthenticationError(SealedError):
    """Ciphertext failed authentication: the data was tampered with, reordered,
    truncated or spliced. Nothing decrypted from it is returned."""


class UnrecoverableError(SealedError):
    """Damage beyond what the redundancy can repair.

    ``blocks`` names the data blocks (0-based indexes in the data stream)
    that could not be healed; ``regions`` names metadata regions that could
    not be recovered (for example ``"header"``).
    """

    def __init__(self, message: str, *, blocks: tuple[int, ...] = (), regions: tuple[str, ...] = ()):
        super().__init__(message)
        self.blocks = tuple(blocks)
        self.regions = tuple(regions)


class UsageError(SealedError):
    """The caller asked for something impossible (bad argument, missing input)."""


class SnapshotNotFoundError(SealedError):
    """The repository holds no snapshot of that name: a refusal of what was asked for (exit 2 in the CLI,
    like a file that is not a sealed file), not a mistake in how the command was written (64)."""


class DestinationExistsError(UsageError):
    """The output file already exists (or appeared while writing); nothing is ever overwritten
    unless asked for explicitly."""
