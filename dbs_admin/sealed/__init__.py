"""The sealed container (``.dbs``): streaming, zstd-compressed, encrypted, self-healing.

Pure Python with no Django import, so a backup can be checked, healed and
decrypted on a bare machine (``python -m dbs_admin.sealed``). The byte
format is specified in docs/FORMAT.md.

    seal(source, destination, *, passphrase=None, recipients=(), manifest=None, ...) -> SealReport
    open_sealed(path, *, passphrase=None, identity=None) -> SealedReader   (read / iterate / read_all_to)
    read_manifest(f, size, *, passphrase=None, identity=None) -> dict     (metadata regions only: ranged reads)
    verify(path, *, passphrase=None, identity=None) -> VerifyReport
    heal(path, destination) -> HealReport
    info(path) -> dict

Consumers of ``open_sealed`` must commit nothing before reading to EOF
without an exception (see ``reader``); ``read_all_to`` does that for files.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from dbs_admin.sealed.errors import (
    AuthenticationError,
    DestinationExistsError,
    KeySlotError,
    NoKeyError,
    NotSealedError,
    SealedError,
    SnapshotNotFoundError,
    UnrecoverableError,
    UnsupportedVersionError,
    UsageError,
    WrongIdentityError,
    WrongPassphraseError,
)

# What is imported on first use, and from where. Why lazily: the Django side imports this package for its
# errors and atomic writes at start-up (targets, the console), and the readers and writers pull numpy,
# Argon2 and the AEAD in; a command that never seals or opens a file should not pay for them.
_LAZY = {
    "HealReport": "heal", "heal": "heal",
    "Argon2Params": "keys", "Identity": "keys", "generate_identity": "keys", "load_identity": "keys",
    "SealedReader": "reader", "open_sealed": "reader", "read_manifest": "reader",
    "SealReport": "reports", "VerifyReport": "reports",
    "info": "verify", "verify": "verify",
    "seal": "writer",
}

if TYPE_CHECKING:
    from dbs_admin.sealed.heal import HealReport, heal
    from dbs_admin.sealed.keys import Argon2Params, Identity, generate_identity, load_identity
    from dbs_admin.sealed.reader import SealedReader, open_sealed, read_manifest
    from dbs_admin.sealed.reports import SealReport, VerifyReport
    from dbs_admin.sealed.verify import info, verify
    from dbs_admin.sealed.writer import seal


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


class _SealedPackage(types.ModuleType):
    """This package, keeping ``verify`` and ``heal`` the functions once their submodules are imported.

    Why: the functions share their names with the modules that define them. Importing ``sealed.verify`` (the
    repository's checker does) makes Python set the package's attribute ``verify`` to that module, after
    which ``from dbs_admin.sealed import verify`` would hand out a module. The eager imports this package
    used to do hid that; lazy names (see ``_LAZY``) must hold it off themselves. Import the modules with
    ``from dbs_admin.sealed.verify import ...``, never ``import dbs_admin.sealed.verify as ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


_SHADOWED = ("verify", "heal")
sys.modules[__name__].__class__ = _SealedPackage
for _name in _SHADOWED:  # a submodule imported before this line (an import cycle) already set the attribute
    if isinstance(globals().get(_name), types.ModuleType):
        globals()[_name] = getattr(globals()[_name], _name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "read_manifest",
    "seal",
    "open_sealed",
    "verify",
    "heal",
    "info",
    "SealReport",
    "VerifyReport",
    "HealReport",
    "SealedReader",
    "Argon2Params",
    "Identity",
    "generate_identity",
    "load_identity",
    "SealedError",
    "NotSealedError",
    "UnsupportedVersionError",
    "KeySlotError",
    "NoKeyError",
    "WrongPassphraseError",
    "WrongIdentityError",
    "AuthenticationError",
    "UnrecoverableError",
    "UsageError",
    "DestinationExistsError",
    "SnapshotNotFoundError",
]
