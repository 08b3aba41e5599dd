"""The repository key: random, wrapped in the container's key slots, in the ``keys`` object.

The ``keys`` object is an ordinary repository object (see ``objects``) whose
header holds real key slots (the container's ``wrap_key_slots``: Argon2id
passphrase, X25519 recipients, several at once) wrapping the 32-byte
repository key, from which every other key derives (object keys, the
chunk-id key). Opening it unwraps the slots (Argon2 runs once per opening),
derives the object key and authenticates the object's manifest, so a
wrong key is refused before anything else is read. It heals like every
object. A process keeps the keys it unwrapped with a passphrase in memory
(``_UNWRAPPED``), so a worker pays Argon2 once per repository, not per backup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from dbs_admin.sealed.aead import derive_subkey
from dbs_admin.sealed.errors import SealedError
from dbs_admin.sealed.keys import Argon2Params, Identity, unwrap_key_slots, wrap_key_slots
from dbs_admin.sealed.repo.objects import REPOSITORY_ID_SIZE, SealedObject, write_object
from dbs_admin.sealed.repo.store import ObjectStore

KEYS_NAME = "keys"
CHUNK_ID_LABEL = b"dbs1/repo-chunk-id"


@dataclass(frozen=True)
class RepositoryKey:
    repository_id: bytes
    key: bytes

    @property
    def chunk_id_key(self) -> bytes:
        """The BLAKE2b key of chunk ids: ids reveal nothing about content to whoever lacks the key."""
        return derive_subkey(self.key, CHUNK_ID_LABEL)

    def __repr__(self) -> str:
        return f"RepositoryKey(repository_id={self.repository_id.hex()})"


def create_keys(store: ObjectStore, *, passphrase: str | bytes | None = None, recipients: tuple[str, ...] = (),
                argon2: Argon2Params | None = None, allow_weak_argon2: bool = False) -> RepositoryKey:
    """Make a new repository key and publish the ``keys`` object (refused if one exists)."""
    key = RepositoryKey(secrets.token_bytes(REPOSITORY_ID_SIZE), secrets.token_bytes(32))
    slots = wrap_key_slots(key.key, passphrase=passphrase, recipients=recipients,
                           argon2=argon2 if argon2 is not None else Argon2Params(), allow_weak=allow_weak_argon2)
    write_object(store, KEYS_NAME, repository_key=key.key, repository_id=key.repository_id, kind="keys",
                 data=lambda _key, _digest: [], manifest={"format": 1}, slots=slots)
    return key


# Unwrapped repository keys of this process, so that a long-lived worker runs Argon2 once per repository and
# passphrase, not at every backup: (SHA-256 of the key slots, HMAC of the passphrase under a per-process random
# key) -> repository key. Memory only (never written anywhere), and only for a passphrase this process was given
# anyway; the key slots changing (a passphrase added or replaced) or another passphrase misses it, and the key it
# gives is still authenticated by the keys object's manifest, as an unwrapped one is.
_UNWRAPPED: dict[tuple[bytes, bytes], bytes] = {}
_CACHE_SIZE = 16
_PROCESS_SECRET = secrets.token_bytes(32)


def _passphrase_tag(passphrase: str | bytes) -> bytes:
    data = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
    return hmac.new(_PROCESS_SECRET, data, hashlib.sha256).digest()


def forget_unwrapped_keys() -> None:
    """Drop every repository key this process keeps (after a passphrase change, or before handing work off)."""
    _UNWRAPPED.clear()


def open_keys(store: ObjectStore, *, passphrase: str | bytes | None = None,
              identity: Identity | None = None) -> RepositoryKey:
    """Unwrap the repository key (a wrong key raises the container's key errors; nothing is read further)."""
    try:
        store.size(KEYS_NAME)
    except OSError:
        raise SealedError("this is not a repository (it has no keys object)") from None

    tag = _passphrase_tag(passphrase) if passphrase is not None and identity is None else None

    def unwrap(slots: bytes) -> bytes:
        if tag is None:
            return unwrap_key_slots(slots, passphrase=passphrase, identity=identity)
        slot = (hashlib.sha256(slots).digest(), tag)
        key = _UNWRAPPED.get(slot)
        if key is None:
            key = unwrap_key_slots(slots, passphrase=passphrase, identity=identity)
            if len(_UNWRAPPED) >= _CACHE_SIZE:
                _UNWRAPPED.pop(next(iter(_UNWRAPPED)))
            _UNWRAPPED[slot] = key
        return key

    with SealedObject(store, KEYS_NAME, repository_key=unwrap, repository_id=None, kind="keys") as obj:
        return RepositoryKey(obj.repository_id, obj.repository_key)
