"""Key slots and identities of the sealed container.

Every sealed file is encrypted under a fresh random *data key*. That key is
never stored in the clear: it is *wrapped* (AES-256-GCM) once per key slot,
under a key-encryption key (KEK) that only the holder of a passphrase or of
an X25519 identity can recompute. Several slots may wrap the same data key,
so one backup can be opened by a passphrase *or* by a recipient's identity,
and a server holding only recipient public keys can write backups it cannot
read.

The byte layouts (slot blob, identity file, labels) are specified in
``docs/FORMAT.md`` section 7; change one only together with the other.

Secrets (passphrases, private keys, KEKs, data keys) never appear in an
exception message, a log line or a ``repr``. This module imports nothing
from Django.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbs_admin.sealed.errors import (
    DestinationExistsError,
    KeySlotFormatError,
    NoKeyError,
    UsageError,
    WrongIdentityError,
    WrongPassphraseError,
)

__all__ = [
    "DATA_KEY_SIZE",
    "Argon2Params",
    "Identity",
    "new_data_key",
    "wrap_key_slots",
    "unwrap_key_slots",
    "describe_key_slots",
    "key_slots_size",
    "parse_recipient",
    "recipient_fingerprint",
    "generate_identity",
    "load_identity",
]

DATA_KEY_SIZE = 32

# --- Fixed byte strings (see docs/FORMAT.md section 7). Never change them: files depend on them.
SLOT_AD_LABEL = b"dbs1/key-slot"
IDENTITY_AD_LABEL = b"dbs1/identity"
X25519_HKDF_INFO = b"dbs1/x25519-kek"
RECIPIENT_CHECKSUM_LABEL = b"dbs1/recipient-checksum"
RECIPIENT_FINGERPRINT_LABEL = b"dbs1/recipient-fingerprint"
RECIPIENT_PREFIX = "dbs1"
IDENTITY_DATA_PREFIX = "DBS-IDENTITY-1:"

SLOT_TYPE_PASSPHRASE = 0x01
SLOT_TYPE_RECIPIENT = 0x02

SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
X25519_KEY_SIZE = 32
FINGERPRINT_SIZE = 4
CHECKSUM_SIZE = 4
WRAPPED_SIZE = DATA_KEY_SIZE + TAG_SIZE  # 48

_PARAMS = struct.Struct(">III")  # time_cost, memory_kib, parallelism
PASSPHRASE_BODY_SIZE = _PARAMS.size + SALT_SIZE + NONCE_SIZE + WRAPPED_SIZE  # 88
RECIPIENT_BODY_SIZE = FINGERPRINT_SIZE + X25519_KEY_SIZE + NONCE_SIZE + WRAPPED_SIZE  # 96
_SLOT_HEAD = struct.Struct(">BH")  # type, body length
MAX_SLOTS = 255

# Bounds on Argon2 parameters. Reading accepts anything inside them (an old
# file may have been written with other settings), but never more: a hostile
# header must not make us allocate a terabyte or spin for hours.
MAX_TIME_COST = 64
MAX_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB
MAX_PARALLELISM = 64
# Writing refuses anything weaker than the defaults (RFC 9106, second recommendation).
MIN_WRITE_TIME_COST = 3
MIN_WRITE_MEMORY_KIB = 64 * 1024

_MAX_IDENTITY_FILE_SIZE = 64 * 1024


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost settings stored in every passphrase slot.

    The defaults are RFC 9106's second recommended option (t=3, 64 MiB,
    4 lanes) and are the minimum accepted for writing unless the caller
    explicitly opts out (``allow_weak=True``, meant for tests).
    """

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    def __post_init__(self) -> None:
        for name in ("time_cost", "memory_kib", "parallelism"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"Argon2 {name} must be a positive integer, got {value!r}")

    def _pack(self) -> bytes:
        return _PARAMS.pack(self.time_cost, self.memory_kib, self.parallelism)

    def _problem(self) -> str | None:
        """Why these parameters may not be used even for reading, or None if they may."""
        if self.time_cost > MAX_TIME_COST:
            return f"Argon2 time cost {self.time_cost} exceeds the limit of {MAX_TIME_COST}"
        if self.memory_kib > MAX_MEMORY_KIB:
            return f"Argon2 memory {self.memory_kib} KiB exceeds the limit of {MAX_MEMORY_KIB} KiB (4 GiB)"
        if self.parallelism > MAX_PARALLELISM:
            return f"Argon2 parallelism {self.parallelism} exceeds the limit of {MAX_PARALLELISM}"
        if self.memory_kib < 8 * self.parallelism:
            return f"Argon2 memory must be at least 8 KiB per lane, got {self.memory_kib} KiB"
        return None


def _check_write_params(params: Argon2Params, allow_weak: bool) -> None:
    if not isinstance(params, Argon2Params):
        raise UsageError("argon2 must be an Argon2Params instance")
    problem = params._problem()
    if problem:
        raise UsageError(problem)
    if not allow_weak and (
        params.time_cost < MIN_WRITE_TIME_COST or params.memory_kib < MIN_WRITE_MEMORY_KIB
    ):
        raise UsageError(
            f"Argon2 parameters weaker than t={MIN_WRITE_TIME_COST}, m={MIN_WRITE_MEMORY_KIB} KiB "
            "are refused for writing"
        )


def new_data_key() -> bytes:
    """A fresh random data key; one per sealed file, so chunk nonces never repeat under a key."""
    return secrets.token_bytes(DATA_KEY_SIZE)


def _passphrase_bytes(passphrase: str | bytes, *, writing: bool) -> bytes:
    """Encode a passphrase. ``str`` is NFC-normalised first so the same typed text
    opens the file on every platform, whatever its keyboard produced."""
    if isinstance(passphrase, str):
        raw = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    elif isinstance(passphrase, (bytes, bytearray, memoryview)):
        raw = bytes(passphrase)
    else:
        raise UsageError("the passphrase must be str or bytes")
    if writing and not raw:
        raise UsageError("an empty passphrase is not allowed")
    return raw


def _argon2id(passphrase: bytes, salt: bytes, params: Argon2Params) -> bytes:
    return hash_secret_raw(
        secret=passphrase,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
        version=19,
    )


def _blake2b_label(label: bytes, data: bytes, size: int) -> bytes:
    return hashlib.blake2b(label + data, digest_size=32).digest()[:size]


# --- Passphrase-protected secret (used by passphrase slots and identity files)


def _seal_with_passphrase(secret: bytes, passphrase: bytes, params: Argon2Params, ad_label: bytes) -> bytes:
    """Body: params(12) || salt(16) || nonce(12) || AES-GCM(secret)(32+16).

    The associated data binds the label and everything before the nonce, so
    the stored Argon2 parameters and salt cannot be edited without detection.
    """
    salt = secrets.token_bytes(SALT_SIZE)
    nonce = secrets.token_bytes(NONCE_SIZE)
    prefix = params._pack() + salt
    kek = _argon2id(passphrase, salt, params)
    return prefix + nonce + AESGCM(kek).encrypt(nonce, secret, ad_label + prefix)


def _parse_passphrase_body(body: bytes) -> tuple[Argon2Params, bytes, bytes, bytes]:
    """Split a passphrase body into (params, salt, nonce, wrapped); raise on malformed bytes."""
    if len(body) != PASSPHRASE_BODY_SIZE:
        raise KeySlotFormatError(f"passphrase slot has {len(body)} bytes, expected {PASSPHRASE_BODY_SIZE}")
    t, m, p = _PARAMS.unpack_from(body, 0)
    if t < 1 or m < 1 or p < 1:
        raise KeySlotFormatError("passphrase slot has zero Argon2 parameters")
    params = Argon2Params(t, m, p)
    o = _PARAMS.size
    return (
        params,
        body[o : o + SALT_SIZE],
        body[o + SALT_SIZE : o + SALT_SIZE + NONCE_SIZE],
        body[-WRAPPED_SIZE:],
    )


def _open_with_passphrase(body: bytes, passphrase: bytes, ad_label: bytes) -> bytes | None:
    """The secret in a passphrase body, or None if the passphrase does not open it.

    Parameters outside the reading bounds are refused *before* Argon2 runs.
    """
    params, salt, nonce, wrapped = _parse_passphrase_body(body)
    problem = params._problem()
    if problem:
        raise KeySlotFormatError(f"refusing a passphrase slot: {problem}")
    kek = _argon2id(passphrase, salt, params)
    prefix_len = _PARAMS.size + SALT_SIZE
    try:
        return AESGCM(kek).decrypt(nonce, wrapped, ad_label + body[:prefix_len])
    except InvalidTag:
        return None


# --- Recipients


def _checksum(public: bytes) -> bytes:
    return _blake2b_label(RECIPIENT_CHECKSUM_LABEL, public, CHECKSUM_SIZE)


def _fingerprint(public: bytes) -> bytes:
    return _blake2b_label(RECIPIENT_FINGERPRINT_LABEL, public, FINGERPRINT_SIZE)


def _encode_recipient(public: bytes) -> str:
    text = base64.b32encode(public + _checksum(public)).decode("ascii").rstrip("=").lower()
    return RECIPIENT_PREFIX + text


def parse_recipient(s: str) -> bytes:
    """The 32-byte X25519 public key in a ``dbs1...`` recipient string.

    The embedded checksum catches typos and truncation with a clear message,
    instead of silently sealing a backup for a key nobody holds.
    """
    if not isinstance(s, str):
        raise UsageError("a recipient must be a string starting with 'dbs1'")
    text = s.strip().lower()
    if not text.startswith(RECIPIENT_PREFIX):
        raise UsageError("not a dbs recipient: it must start with 'dbs1'")
    body = text[len(RECIPIENT_PREFIX) :]
    expected_len = len(_encode_recipient(bytes(X25519_KEY_SIZE))) - len(RECIPIENT_PREFIX)
    if len(body) != expected_len:
        raise UsageError(
            f"recipient has {len(body)} characters after 'dbs1', expected {expected_len}: "
            "was it truncated or mistyped?"
        )
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise UsageError("recipient contains characters outside a-z and 2-7: it was mistyped") from None
    public, checksum = raw[:X25519_KEY_SIZE], raw[X25519_KEY_SIZE:]
    if checksum != _checksum(public) or _encode_recipient(public) != text:
        raise UsageError("recipient checksum does not match: the recipient string has a typo")
    return public


def recipient_fingerprint(recipient: str) -> str:
    """The short hex fingerprint that ``describe_key_slots`` shows for this recipient."""
    return _fingerprint(parse_recipient(recipient)).hex()


def _x25519_kek(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=X25519_HKDF_INFO,
    ).derive(shared)


class Identity:
    """An X25519 private key: what opens the recipient slots made for ``.recipient``.

    Its ``repr`` shows only the public recipient; the private key is never printed.
    """

    __slots__ = ("_private",)

    def __init__(self, private_key: X25519PrivateKey):
        if not isinstance(private_key, X25519PrivateKey):
            raise UsageError("an Identity needs an X25519 private key")
        self._private = private_key

    @classmethod
    def generate(cls) -> Identity:
        """A new random identity, in memory only (``generate_identity`` also saves it)."""
        return cls(X25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._private.public_key().public_bytes_raw()

    @property
    def recipient(self) -> str:
        """The public ``dbs1...`` string to give to whoever seals backups for this identity."""
        return _encode_recipient(self.public_key)

    @property
    def fingerprint(self) -> str:
        """Hex fingerprint matching the recipient slots made for this identity."""
        return _fingerprint(self.public_key).hex()

    def _exchange(self, public: bytes) -> bytes | None:
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:  # low-order point: all-zero shared secret
            return None

    def __repr__(self) -> str:
        return f"Identity(recipient={self.recipient!r})"


def _wrap_for_recipient(data_key: bytes, recipient_public: bytes) -> bytes:
    """Body: fingerprint(4) || ephemeral_pub(32) || nonce(12) || AES-GCM(data_key)(48)."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    except ValueError:
        raise UsageError("the recipient is not a usable X25519 public key") from None
    kek = _x25519_kek(shared, ephemeral_public, recipient_public)
    nonce = secrets.token_bytes(NONCE_SIZE)
    prefix = _fingerprint(recipient_public) + ephemeral_public
    ad = SLOT_AD_LABEL + bytes([SLOT_TYPE_RECIPIENT]) + prefix
    return prefix + nonce + AESGCM(kek).encrypt(nonce, data_key, ad)


# --- The slot blob


def wrap_key_slots(
    data_key: bytes,
    *,
    passphrase: str | bytes | None = None,
    recipients: Sequence[str] = (),
    argon2: Argon2Params = Argon2Params(),
    allow_weak: bool = False,
) -> bytes:
    """Wrap ``data_key`` in one slot per key and return the serialized slot blob.

    The blob is self-delimiting (see ``key_slots_size``) so the container
    header can embed it. A passphrase slot comes first, then one slot per
    distinct recipient in the given order. ``allow_weak`` permits Argon2
    parameters below the defaults; only tests should need it.
    """
    if not isinstance(data_key, (bytes, bytearray)) or len(data_key) != DATA_KEY_SIZE:
        raise UsageError(f"the data key must be {DATA_KEY_SIZE} bytes")
    data_key = bytes(data_key)
    if isinstance(recipients, str):
        raise UsageError("recipients must be a sequence of recipient strings, not one string")
    publics: list[bytes] = []
    for recipient in recipients:
        public = parse_recipient(recipient)
        if public not in publics:
            publics.append(public)
    if passphrase is None and not publics:
        raise UsageError("sealing needs a passphrase or at least one recipient")
    if (passphrase is not None) + len(publics) > MAX_SLOTS:
        raise UsageError(f"at most {MAX_SLOTS} key slots are possible")

    slots: list[tuple[int, bytes]] = []
    if passphrase is not None:
        raw = _passphrase_bytes(passphrase, writing=True)
        _check_write_params(argon2, allow_weak)
        ad_label = SLOT_AD_LABEL + bytes([SLOT_TYPE_PASSPHRASE])
        slots.append((SLOT_TYPE_PASSPHRASE, _seal_with_passphrase(data_key, raw, argon2, ad_label)))
    for public in publics:
        slots.append((SLOT_TYPE_RECIPIENT, _wrap_for_recipient(data_key, public)))

    out = bytearray([len(slots)])
    for slot_type, body in slots:
        out += _SLOT_HEAD.pack(slot_type, len(body)) + body
    return bytes(out)


def key_slots_size(buf: bytes | bytearray | memoryview) -> int:
    """Length of the slot blob at the start of ``buf`` (which may continue with other data)."""
    view = memoryview(buf).cast("B")
    if len(view) < 1:
        raise KeySlotFormatError("key slots are missing (empty)")
    count = view[0]
    if count == 0:
        raise KeySlotFormatError("the file has zero key slots")
    pos = 1
    for i in range(count):
        if pos + _SLOT_HEAD.size > len(view):
            raise KeySlotFormatError(f"key slot {i} is truncated")
        _, length = _SLOT_HEAD.unpack_from(view, pos)
        pos += _SLOT_HEAD.size + length
        if pos > len(view):
            raise KeySlotFormatError(f"key slot {i} is truncated")
    return pos


def _parse_slots(slots: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
    """(type, body) pairs of an exact slot blob; malformed bytes raise KeySlotFormatError."""
    if not isinstance(slots, (bytes, bytearray, memoryview)):
        raise UsageError("key slots must be bytes")
    data = bytes(slots)
    size = key_slots_size(data)
    if size != len(data):
        raise KeySlotFormatError(f"{len(data) - size} unexpected bytes after the key slots")
    out: list[tuple[int, bytes]] = []
    pos = 1
    for _ in range(data[0]):
        slot_type, length = _SLOT_HEAD.unpack_from(data, pos)
        body = data[pos + _SLOT_HEAD.size : pos + _SLOT_HEAD.size + length]
        pos += _SLOT_HEAD.size + length
        if slot_type == SLOT_TYPE_PASSPHRASE:
            _parse_passphrase_body(body)
        elif slot_type == SLOT_TYPE_RECIPIENT and len(body) != RECIPIENT_BODY_SIZE:
            raise KeySlotFormatError(f"recipient slot has {len(body)} bytes, expected {RECIPIENT_BODY_SIZE}")
        out.append((slot_type, body))
    return out


def describe_key_slots(slots: bytes) -> list[dict]:
    """What each slot is, without any key (for ``info``).

    Passphrase slots report their Argon2 parameters and whether they are
    within the limits this reader accepts; recipient slots report the
    recipient fingerprint; unknown slot types (from a newer writer) are
    listed, not rejected.
    """
    result: list[dict] = []
    for slot_type, body in _parse_slots(slots):
        if slot_type == SLOT_TYPE_PASSPHRASE:
            params = _parse_passphrase_body(body)[0]
            result.append(
                {
                    "type": "passphrase",
                    "kdf": "argon2id",
                    "time_cost": params.time_cost,
                    "memory_kib": params.memory_kib,
                    "parallelism": params.parallelism,
                    "within_limits": params._problem() is None,
                }
            )
        elif slot_type == SLOT_TYPE_RECIPIENT:
            result.append(
                {"type": "recipient", "kem": "x25519", "fingerprint": body[:FINGERPRINT_SIZE].hex()}
            )
        else:
            result.append({"type": "unknown", "type_byte": slot_type, "size": len(body)})
    return result


def _kinds_summary(parsed: list[tuple[int, bytes]]) -> str:
    n_pass = sum(1 for t, _ in parsed if t == SLOT_TYPE_PASSPHRASE)
    recips = [b[:FINGERPRINT_SIZE].hex() for t, b in parsed if t == SLOT_TYPE_RECIPIENT]
    parts = []
    if n_pass:
        parts.append(f"{n_pass} passphrase slot{'s' if n_pass > 1 else ''}")
    if recips:
        plural = "s" if len(recips) > 1 else ""
        parts.append(f"{len(recips)} recipient slot{plural} (fingerprints {', '.join(recips)})")
    unknown = len(parsed) - n_pass - len(recips)
    if unknown:
        parts.append(f"{unknown} slot{'s' if unknown > 1 else ''} of an unknown type")
    return " and ".join(parts)


def unwrap_key_slots(
    slots: bytes,
    *,
    passphrase: str | bytes | None = None,
    identity: Identity | None = None,
) -> bytes:
    """Recover the data key from the first slot the given key opens.

    Raises NoKeyError when no key is given (the message says which kinds of
    slot the file has), WrongIdentityError / WrongPassphraseError when the
    key opens nothing (or the file has no slot of that kind), and
    KeySlotFormatError for malformed or hostile slot bytes. A key that opens
    a slot always yields the right data key: every wrap is authenticated.
    """
    parsed = _parse_slots(slots)
    summary = _kinds_summary(parsed)
    if passphrase is None and identity is None:
        raise NoKeyError(f"this file needs a key to open: it has {summary}")
    if identity is not None and not isinstance(identity, Identity):
        raise UsageError("identity must be an Identity (see load_identity)")

    if identity is not None:
        mine = identity.fingerprint
        recipient_slots = [b for t, b in parsed if t == SLOT_TYPE_RECIPIENT]
        # Slots whose fingerprint matches first; then all others (the fingerprint is only a hint).
        recipient_slots.sort(key=lambda b: b[:FINGERPRINT_SIZE].hex() != mine)
        own_public = identity.public_key
        for body in recipient_slots:
            prefix = body[: FINGERPRINT_SIZE + X25519_KEY_SIZE]
            ephemeral_public = body[FINGERPRINT_SIZE : FINGERPRINT_SIZE + X25519_KEY_SIZE]
            nonce = body[len(prefix) : len(prefix) + NONCE_SIZE]
            shared = identity._exchange(ephemeral_public)
            if shared is None:
                continue
            kek = _x25519_kek(shared, ephemeral_public, own_public)
            ad = SLOT_AD_LABEL + bytes([SLOT_TYPE_RECIPIENT]) + prefix
            try:
                key = AESGCM(kek).decrypt(nonce, body[-WRAPPED_SIZE:], ad)
            except InvalidTag:
                continue
            if len(key) == DATA_KEY_SIZE:
                return key

    if passphrase is not None:
        raw = _passphrase_bytes(passphrase, writing=False)
        ad_label = SLOT_AD_LABEL + bytes([SLOT_TYPE_PASSPHRASE])
        for slot_type, body in parsed:
            if slot_type != SLOT_TYPE_PASSPHRASE:
                continue
            key = _open_with_passphrase(body, raw, ad_label)
            if key is not None and len(key) == DATA_KEY_SIZE:
                return key

    has_pass = any(t == SLOT_TYPE_PASSPHRASE for t, _ in parsed)
    has_recip = any(t == SLOT_TYPE_RECIPIENT for t, _ in parsed)
    if passphrase is not None and has_pass:
        also = " (nor does the identity)" if identity is not None else ""
        raise WrongPassphraseError(f"wrong passphrase: it opens none of this file's key slots{also}")
    if identity is not None and has_recip:
        raise WrongIdentityError(
            f"wrong identity: {identity.recipient} (fingerprint {identity.fingerprint}) opens none of "
            f"this file's key slots; the file has {summary}"
        )
    if passphrase is not None:
        raise WrongPassphraseError(f"this file has no passphrase slot: it has {summary}; give an identity",
                                   no_slot_of_that_kind=True)
    raise WrongIdentityError(f"this file has no recipient slot: it has {summary}; give the passphrase",
                             no_slot_of_that_kind=True)


# --- Identity files


def _identity_text(identity: Identity, passphrase: bytes, params: Argon2Params) -> bytes:
    body = _seal_with_passphrase(identity._private.private_bytes_raw(), passphrase, params, IDENTITY_AD_LABEL)
    return (
        "# dbs_admin identity: an X25519 private key, encrypted with a passphrase.\n"
        "# Keep it secret and keep a copy: without it, backups sealed for it cannot be opened.\n"
        f"# recipient: {identity.recipient}\n"
        f"{IDENTITY_DATA_PREFIX}{base64.b64encode(body).decode('ascii')}\n"
    ).encode("ascii")


def generate_identity(
    path: str | os.PathLike[str],
    passphrase: str | bytes,
    *,
    argon2: Argon2Params = Argon2Params(),
    allow_weak: bool = False,
) -> Identity:
    """Create a new identity and save it to ``path``, encrypted under ``passphrase``.

    The file is written atomically with mode 0600 (temporary name, fsync,
    then a link that fails if ``path`` exists), so a crash never leaves a
    half-written identity and an existing one is never overwritten.
    """
    path = Path(path)
    raw = _passphrase_bytes(passphrase, writing=True)
    _check_write_params(argon2, allow_weak)
    if path.exists() or path.is_symlink():
        raise DestinationExistsError(f"identity file {path} already exists; refusing to overwrite it")
    identity = Identity.generate()
    text = _identity_text(identity, raw, argon2)

    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise UsageError(f"cannot create identity file in {path.parent}: {exc.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and fails if path exists (unlike rename)
        except FileExistsError:
            raise DestinationExistsError(f"identity file {path} already exists; refusing to overwrite it") from None
        except OSError as exc:
            raise UsageError(f"cannot create identity file {path}: {exc.strerror}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return identity
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return identity


def load_identity(path: str | os.PathLike[str], passphrase: str | bytes) -> Identity:
    """Read and decrypt the identity file at ``path``.

    Raises UsageError when the file is missing or is not an identity file,
    WrongPassphraseError (naming the file) when the passphrase is wrong.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_IDENTITY_FILE_SIZE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read identity file {path}: {exc.strerror}") from None
    not_identity = UsageError(f"{path} is not a dbs_admin identity file (see `keygen`)")
    if len(data) > _MAX_IDENTITY_FILE_SIZE:
        raise not_identity
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise not_identity from None
    payloads = [line.strip() for line in lines if line.strip().startswith(IDENTITY_DATA_PREFIX)]
    if len(payloads) != 1:
        raise not_identity
    try:
        body = base64.b64decode(payloads[0][len(IDENTITY_DATA_PREFIX) :], validate=True)
        _parse_passphrase_body(body)
    except (binascii.Error, ValueError, KeySlotFormatError):
        raise UsageError(f"identity file {path} is damaged: its key line cannot be decoded") from None
    try:
        secret = _open_with_passphrase(body, _passphrase_bytes(passphrase, writing=False), IDENTITY_AD_LABEL)
    except KeySlotFormatError as exc:
        raise UsageError(f"identity file {path}: {exc}") from None
    if secret is None:
        raise WrongPassphraseError(f"wrong passphrase for identity file {path}")
    return Identity(X25519PrivateKey.from_private_bytes(secret))
