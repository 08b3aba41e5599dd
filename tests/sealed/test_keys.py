"""Key slots, recipients and identity files."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import struct
import time

import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbs_admin.sealed import keys
from dbs_admin.sealed.errors import (
    DestinationExistsError,
    KeySlotFormatError,
    NoKeyError,
    SealedError,
    UsageError,
    WrongIdentityError,
    WrongPassphraseError,
)
from dbs_admin.sealed.keys import (
    DATA_KEY_SIZE,
    Argon2Params,
    Identity,
    describe_key_slots,
    generate_identity,
    key_slots_size,
    load_identity,
    new_data_key,
    parse_recipient,
    recipient_fingerprint,
    unwrap_key_slots,
    wrap_key_slots,
)

CHEAP = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
PASS = "correct horse battery staple"


def wrap(key: bytes, **kw) -> bytes:
    return wrap_key_slots(key, argon2=CHEAP, allow_weak=True, **kw)


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def bob() -> Identity:
    return Identity.generate()


def test_defaults_are_rfc9106_second_recommendation() -> None:
    assert Argon2Params() == Argon2Params(time_cost=3, memory_kib=64 * 1024, parallelism=4)
    assert DATA_KEY_SIZE == 32
    key = new_data_key()
    blob = wrap_key_slots(key, passphrase=PASS)  # real default cost, once
    info = describe_key_slots(blob)
    assert info == [
        {
            "type": "passphrase",
            "kdf": "argon2id",
            "time_cost": 3,
            "memory_kib": 65536,
            "parallelism": 4,
            "within_limits": True,
        }
    ]
    assert unwrap_key_slots(blob, passphrase=PASS) == key


def test_weak_params_refused_for_writing_unless_allowed() -> None:
    key = new_data_key()
    with pytest.raises(UsageError, match="weaker"):
        wrap_key_slots(key, passphrase=PASS, argon2=CHEAP)
    with pytest.raises(UsageError, match="weaker"):
        wrap_key_slots(key, passphrase=PASS, argon2=Argon2Params(2, 65536, 4))
    with pytest.raises(UsageError):
        Argon2Params(0, 1024, 1)
    with pytest.raises(UsageError, match="limit"):  # even allow_weak cannot exceed the reading bounds
        wrap_key_slots(key, passphrase=PASS, argon2=Argon2Params(65, 1024, 1), allow_weak=True)


def test_new_data_keys_are_random() -> None:
    assert len({new_data_key() for _ in range(50)}) == 50


def test_passphrase_slot_round_trip() -> None:
    key = new_data_key()
    blob = wrap(key, passphrase=PASS)
    assert unwrap_key_slots(blob, passphrase=PASS) == key
    assert unwrap_key_slots(blob, passphrase=PASS.encode()) == key
    assert key not in blob  # wrapped, not stored
    assert wrap(key, passphrase=PASS) != blob  # fresh salt and nonce each time


def test_passphrase_str_is_nfc_normalised() -> None:
    key = new_data_key()
    blob = wrap(key, passphrase="caf\u00e9")  # precomposed é
    assert unwrap_key_slots(blob, passphrase="cafe\u0301") == key  # e + combining accent


def test_wrong_passphrase() -> None:
    blob = wrap(new_data_key(), passphrase=PASS)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        unwrap_key_slots(blob, passphrase=PASS + " ")


def test_recipient_slot_round_trip(alice, bob) -> None:
    key = new_data_key()
    blob = wrap_key_slots(key, recipients=[alice.recipient, bob.recipient])
    assert unwrap_key_slots(blob, identity=alice) == key
    assert unwrap_key_slots(blob, identity=bob) == key
    fingerprints = [s["fingerprint"] for s in describe_key_slots(blob)]
    assert fingerprints == [alice.fingerprint, bob.fingerprint]
    assert recipient_fingerprint(alice.recipient) == alice.fingerprint


def test_wrong_identity(alice, bob) -> None:
    blob = wrap_key_slots(new_data_key(), recipients=[alice.recipient])
    with pytest.raises(WrongIdentityError, match="wrong identity"):
        unwrap_key_slots(blob, identity=bob)


def test_recipient_slot_is_tried_even_if_fingerprint_is_damaged(alice) -> None:
    """The fingerprint is only a hint; but it is authenticated, so an edited one cannot open."""
    key = new_data_key()
    blob = bytearray(wrap_key_slots(key, recipients=[alice.recipient]))
    blob[4] ^= 0xFF  # first fingerprint byte (count 1 + type 1 + length 2)
    with pytest.raises(WrongIdentityError):
        unwrap_key_slots(bytes(blob), identity=alice)


def test_both_kinds_open_with_either(alice) -> None:
    key = new_data_key()
    blob = wrap(key, passphrase=PASS, recipients=[alice.recipient])
    assert [s["type"] for s in describe_key_slots(blob)] == ["passphrase", "recipient"]
    assert unwrap_key_slots(blob, passphrase=PASS) == key
    assert unwrap_key_slots(blob, identity=alice) == key
    assert unwrap_key_slots(blob, passphrase="nope", identity=alice) == key
    assert unwrap_key_slots(blob, passphrase=PASS, identity=Identity.generate()) == key


def test_no_key_says_what_the_file_has(alice) -> None:
    blob = wrap(new_data_key(), passphrase=PASS, recipients=[alice.recipient])
    with pytest.raises(NoKeyError) as exc:
        unwrap_key_slots(blob)
    assert "1 passphrase slot" in str(exc.value)
    assert alice.fingerprint in str(exc.value)


def test_missing_slot_kind_is_reported_as_such(alice) -> None:
    only_pass = wrap(new_data_key(), passphrase=PASS)
    with pytest.raises(WrongIdentityError, match="no recipient slot"):
        unwrap_key_slots(only_pass, identity=alice)
    only_recipient = wrap_key_slots(new_data_key(), recipients=[alice.recipient])
    with pytest.raises(WrongPassphraseError, match="no passphrase slot"):
        unwrap_key_slots(only_recipient, passphrase=PASS)


def test_wrap_needs_a_key_and_a_proper_data_key(alice) -> None:
    with pytest.raises(UsageError):
        wrap(new_data_key())
    with pytest.raises(UsageError):
        wrap(new_data_key(), passphrase="")
    with pytest.raises(UsageError):
        wrap(b"short", passphrase=PASS)
    with pytest.raises(UsageError):
        wrap_key_slots(new_data_key(), recipients=alice.recipient)  # a bare string, not a list


def test_duplicate_recipients_give_one_slot(alice) -> None:
    blob = wrap_key_slots(new_data_key(), recipients=[alice.recipient, alice.recipient.upper()])
    assert len(describe_key_slots(blob)) == 1


def test_edited_argon2_params_never_yield_a_wrong_key() -> None:
    key = new_data_key()
    blob = wrap(key, passphrase=PASS)
    params_at = 1 + 3  # count, type, length
    for field, value in ((0, 2), (1, 2048), (2, 2)):
        bad = bytearray(blob)
        struct.pack_into(">I", bad, params_at + 4 * field, value)
        assert describe_key_slots(bytes(bad))[0] != describe_key_slots(blob)[0]
        with pytest.raises(WrongPassphraseError):
            unwrap_key_slots(bytes(bad), passphrase=PASS)


def test_any_single_byte_flip_fails_cleanly_or_gives_the_right_key(alice) -> None:
    key = new_data_key()
    blob = wrap(key, passphrase=PASS, recipients=[alice.recipient])
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x41
        for kw in ({"passphrase": PASS}, {"identity": alice}):
            try:
                got = unwrap_key_slots(bytes(bad), **kw)
            except SealedError:
                continue
            assert got == key, f"flip at {pos} produced a wrong key"


def test_hostile_argon2_params_are_refused_before_computing(monkeypatch) -> None:
    blob = bytearray(wrap(new_data_key(), passphrase=PASS))
    struct.pack_into(">I", blob, 1 + 3 + 4, 1 << 30)  # memory = 1 TiB

    def must_not_run(*args, **kwargs):
        raise AssertionError("Argon2 was called with hostile parameters")

    monkeypatch.setattr(keys, "_argon2id", must_not_run)
    start = time.perf_counter()
    with pytest.raises(KeySlotFormatError, match="memory"):
        unwrap_key_slots(bytes(blob), passphrase=PASS)
    assert time.perf_counter() - start < 1
    assert describe_key_slots(bytes(blob))[0]["within_limits"] is False

    struct.pack_into(">II", blob, 1 + 3, 1_000_000, 1024)  # absurd time cost
    with pytest.raises(KeySlotFormatError, match="time"):
        unwrap_key_slots(bytes(blob), passphrase=PASS)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],  # truncated body
        lambda b: b[:3],  # truncated slot head
        lambda b: b"",
        lambda b: b"\x00",  # zero slots
        lambda b: b"\x02" + b[1:],  # claims two slots, has one
        lambda b: b + b"\x00",  # trailing garbage
        lambda b: b[:2] + b"\x00\x10" + b[4:],  # length says 16 bytes
        lambda b: b[:4] + bytes(12) + b[16:],  # zero Argon2 parameters
    ],
)
def test_malformed_slot_bytes_raise_sealed_errors(mutate) -> None:
    blob = wrap(new_data_key(), passphrase=PASS)
    bad = mutate(blob)
    with pytest.raises(KeySlotFormatError):
        unwrap_key_slots(bad, passphrase=PASS)
    with pytest.raises(KeySlotFormatError):
        describe_key_slots(bad)


def test_unknown_slot_types_are_listed_and_skipped() -> None:
    key = new_data_key()
    good = wrap(key, passphrase=PASS)
    future = b"\x7f\x00\x03abc"
    blob = bytes([2]) + future + good[1:]
    assert describe_key_slots(blob)[0] == {"type": "unknown", "type_byte": 0x7F, "size": 3}
    assert unwrap_key_slots(blob, passphrase=PASS) == key


def test_key_slots_size_finds_the_end_inside_a_larger_buffer(alice) -> None:
    blob = wrap(new_data_key(), passphrase=PASS, recipients=[alice.recipient])
    assert key_slots_size(blob + b"rest of the header") == len(blob)
    assert len(blob) == 1 + (3 + 88) + (3 + 96)


# --- recipient strings


def test_recipient_string_round_trip(alice) -> None:
    r = alice.recipient
    assert r.startswith("dbs1") and r == r.lower() and "=" not in r
    assert parse_recipient(r) == alice.public_key
    assert parse_recipient("  " + r.upper() + "\n") == alice.public_key


def test_recipient_typos_are_caught(alice) -> None:
    r = alice.recipient
    swapped = r[:10] + ("a" if r[10] != "a" else "b") + r[11:]
    with pytest.raises(UsageError, match="checksum"):
        parse_recipient(swapped)
    with pytest.raises(UsageError, match="truncated"):
        parse_recipient(r[:-1])
    with pytest.raises(UsageError, match="dbs1"):
        parse_recipient("age1" + r[4:])
    with pytest.raises(UsageError, match="characters"):
        parse_recipient(r[:20] + "1" + r[21:])
    with pytest.raises(UsageError):
        wrap_key_slots(new_data_key(), recipients=[swapped])


def test_low_order_recipient_key_is_refused() -> None:
    zero_point = keys._encode_recipient(bytes(32))
    with pytest.raises(UsageError, match="X25519"):
        wrap_key_slots(new_data_key(), recipients=[zero_point])


# --- identity files


def test_identity_file_round_trip(tmp_path) -> None:
    path = tmp_path / "me.identity"
    made = generate_identity(path, PASS, argon2=CHEAP, allow_weak=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert made.recipient in text  # public part readable without the passphrase
    assert not any(p.name.startswith(".me.identity.tmp") for p in tmp_path.iterdir())
    loaded = load_identity(path, PASS)
    assert loaded.recipient == made.recipient
    blob = wrap_key_slots(key := new_data_key(), recipients=[made.recipient])
    assert unwrap_key_slots(blob, identity=loaded) == key
    assert repr(loaded) == f"Identity(recipient={made.recipient!r})"  # never the private key


def test_identity_file_is_not_overwritten(tmp_path) -> None:
    path = tmp_path / "me.identity"
    path.write_text("precious")
    with pytest.raises(DestinationExistsError, match="already exists"):
        generate_identity(path, PASS, argon2=CHEAP, allow_weak=True)
    assert path.read_text() == "precious"


def test_identity_wrong_passphrase_names_the_file(tmp_path) -> None:
    path = tmp_path / "me.identity"
    generate_identity(path, PASS, argon2=CHEAP, allow_weak=True)
    with pytest.raises(WrongPassphraseError, match="me.identity"):
        load_identity(path, "not it")


def test_identity_file_does_not_contain_the_private_key(tmp_path) -> None:
    path = tmp_path / "me.identity"
    identity = generate_identity(path, PASS, argon2=CHEAP, allow_weak=True)
    raw = identity._private.private_bytes_raw()
    data = path.read_bytes()
    assert raw not in data and base64.b64encode(raw) not in data and raw.hex().encode() not in data


def test_not_an_identity_file(tmp_path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(UsageError, match="not a dbs_admin identity"):
        load_identity(other, PASS)
    with pytest.raises(UsageError, match="cannot read"):
        load_identity(tmp_path / "missing", PASS)
    damaged = tmp_path / "damaged.identity"
    damaged.write_text("DBS-IDENTITY-1:@@@@\n")
    with pytest.raises(UsageError, match="damaged"):
        load_identity(damaged, PASS)


def test_identity_file_edits_are_detected(tmp_path) -> None:
    path = tmp_path / "me.identity"
    generate_identity(path, PASS, argon2=CHEAP, allow_weak=True)
    lines = path.read_text().splitlines()
    body = bytearray(base64.b64decode(lines[-1].split(":", 1)[1]))
    body[-1] ^= 1
    lines[-1] = "DBS-IDENTITY-1:" + base64.b64encode(bytes(body)).decode()
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(WrongPassphraseError):
        load_identity(path, PASS)


def test_identity_slot_is_not_a_file_key_slot(tmp_path) -> None:
    """Domain separation: an identity body pasted into a key-slot blob does not open as a slot."""
    path = tmp_path / "me.identity"
    generate_identity(path, PASS, argon2=CHEAP, allow_weak=True)
    body = base64.b64decode(path.read_text().splitlines()[-1].split(":", 1)[1])
    blob = bytes([1, 1]) + struct.pack(">H", len(body)) + body
    with pytest.raises(WrongPassphraseError):
        unwrap_key_slots(blob, passphrase=PASS)


# --- docs/FORMAT.md, sections 7.5 to 7.7: slots and identity files built and read from the spec alone


def _kat_blake2b(label: bytes, data: bytes, size: int = 4) -> bytes:
    return hashlib.blake2b(label + data, digest_size=32).digest()[:size]


def _spec_argon2(passphrase: bytes, salt: bytes, t: int, m: int, p: int) -> bytes:
    return hash_secret_raw(passphrase, salt, t, m, p, 32, Type.ID, 19)


def test_documented_recipient_vector() -> None:
    identity = Identity(X25519PrivateKey.from_private_bytes(b"\x42" * 32))
    pub = identity.public_key
    assert pub.hex() == "132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472"
    checksum = _kat_blake2b(b"dbs1/recipient-checksum", pub)
    encoded = "dbs1" + base64.b32encode(pub + checksum).decode().rstrip("=").lower()
    assert identity.recipient == encoded == "dbs1cmweik7acd55k7tsmazsrktw44p4zqkqhkxcdezh2fgzzgmt6rzdusyddm"
    assert identity.fingerprint == _kat_blake2b(b"dbs1/recipient-fingerprint", pub).hex() == "26284a37"


def test_spec_built_slots_open_with_the_implementation() -> None:
    data_key = bytes(range(200, 232))
    # passphrase slot, section 4.1
    params = struct.pack(">III", 1, 1024, 1)
    salt, nonce = b"S" * 16, b"N" * 12
    kek = _spec_argon2(PASS.encode(), salt, 1, 1024, 1)
    body1 = params + salt + nonce + AESGCM(kek).encrypt(nonce, data_key, b"dbs1/key-slot\x01" + params + salt)
    # recipient slot, section 4.2
    identity = Identity.generate()
    pub = identity.public_key
    eph = X25519PrivateKey.from_private_bytes(b"\x07" * 32)
    eph_pub = eph.public_key().public_bytes_raw()
    shared = eph.exchange(identity._private.public_key())
    kek2 = HKDF(hashes.SHA256(), 32, eph_pub + pub, b"dbs1/x25519-kek").derive(shared)
    prefix = _kat_blake2b(b"dbs1/recipient-fingerprint", pub) + eph_pub
    body2 = prefix + nonce + AESGCM(kek2).encrypt(nonce, data_key, b"dbs1/key-slot\x02" + prefix)
    blob = b"\x02" + b"\x01" + struct.pack(">H", 88) + body1 + b"\x02" + struct.pack(">H", 96) + body2
    assert unwrap_key_slots(blob, passphrase=PASS) == data_key
    assert unwrap_key_slots(blob, identity=identity) == data_key


def test_implementation_slots_open_with_a_spec_reader() -> None:
    identity = Identity.generate()
    data_key = new_data_key()
    blob = wrap(data_key, passphrase=PASS, recipients=[identity.recipient])
    assert blob[0] == 2
    kind, length = struct.unpack_from(">BH", blob, 1)
    assert (kind, length) == (1, 88)
    body = blob[4 : 4 + 88]
    t, m, p = struct.unpack_from(">III", body)
    kek = _spec_argon2(PASS.encode(), body[12:28], t, m, p)
    assert AESGCM(kek).decrypt(body[28:40], body[40:], b"dbs1/key-slot\x01" + body[:28]) == data_key
    kind, length = struct.unpack_from(">BH", blob, 92)
    assert (kind, length) == (2, 96) and len(blob) == 95 + 96
    body = blob[95:]
    shared = identity._private.exchange(X25519PublicKey.from_public_bytes(body[4:36]))
    kek = HKDF(hashes.SHA256(), 32, body[4:36] + identity.public_key, b"dbs1/x25519-kek").derive(shared)
    assert AESGCM(kek).decrypt(body[36:48], body[48:], b"dbs1/key-slot\x02" + body[:36]) == data_key


def test_spec_built_identity_file_loads(tmp_path) -> None:
    private = b"\x42" * 32
    params, salt, nonce = struct.pack(">III", 1, 1024, 1), b"s" * 16, b"n" * 12
    kek = _spec_argon2(b"id pass", salt, 1, 1024, 1)
    body = params + salt + nonce + AESGCM(kek).encrypt(nonce, private, b"dbs1/identity" + params + salt)
    path = tmp_path / "spec.identity"
    path.write_text("# any comment\n\n  DBS-IDENTITY-1:" + base64.b64encode(body).decode() + "  \n")
    loaded = load_identity(path, "id pass")
    assert loaded.recipient == "dbs1cmweik7acd55k7tsmazsrktw44p4zqkqhkxcdezh2fgzzgmt6rzdusyddm"
