"""The repository key: random, wrapped in the container's key slots, in the ``keys`` object.

The ``keys`` object is an ordinary repository object (see ``objects``) whose
header holds real key slots (the container's ``wrap_key_slots``: Argon2id
passphrase, X25519 recipients, several at once) wrapping the 32-byte
repository key, from which every other key derives (object keys, the
chunk-id key). Opening it unwraps the slots (Argon2 runs once per opening),
derives the object key and authenticates the object's manifest, so a
wrong key is refused before anything else is read. It heals like every
object.
"""

from __future__ import annotations

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


def open_keys(store: ObjectStore, *, passphrase: str | bytes | None = None,
              identity: Identity | None = None) -> RepositoryKey:
    """Unwrap the repository key (a wrong key raises the container's key errors; nothing is read further)."""
    try:
        store.size(KEYS_NAME)
    except OSError:
        raise SealedError("this is not a repository (it has no keys object)") from None

    def unwrap(slots: bytes) -> bytes:
        return unwrap_key_slots(slots, passphrase=passphrase, identity=identity)

    with SealedObject(store, KEYS_NAME, repository_key=unwrap, repository_id=None, kind="keys") as obj:
        return RepositoryKey(obj.repository_id, obj.repository_key)
