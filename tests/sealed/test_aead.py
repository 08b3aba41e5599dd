"""The chunked AES-256-GCM payload: round trips and every tamper case must fail."""

from __future__ import annotations

import hashlib
import hmac
import os
import resource

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbs_admin.sealed.aead import (
    MAX_CHUNK_SIZE,
    PLAINTEXT_CHUNK_SIZE,
    TAG_SIZE,
    ChunkDecryptor,
    ChunkEncryptor,
    ciphertext_size,
    derive_subkey,
)
from dbs_admin.sealed.errors import AuthenticationError, SealedError, UsageError

KEY = bytes(range(32))
DIGEST = bytes(range(100, 132))
SMALL = 64  # a small chunk size keeps multi-chunk tests fast


def seal(data: bytes, chunk_size: int = SMALL, key: bytes = KEY, digest: bytes = DIGEST) -> list[bytes]:
    return list(ChunkEncryptor(key, digest, chunk_size).encrypt_stream([data]))


def unseal(chunks, chunk_size: int = SMALL, key: bytes = KEY, digest: bytes = DIGEST) -> bytes:
    return b"".join(ChunkDecryptor(key, digest, chunk_size).decrypt_stream(chunks))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# --- round trips


@pytest.mark.parametrize(
    "size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 2 * SMALL - 1, 2 * SMALL, 2 * SMALL + 1, 10 * SMALL]
)
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    data = os.urandom(size)
    chunks = seal(data)
    assert unseal(chunks) == data
    # Every chunk but the last is full; the last holds the remainder (or a full chunk).
    assert all(len(c) == SMALL + TAG_SIZE for c in chunks[:-1])
    assert TAG_SIZE <= len(chunks[-1]) <= SMALL + TAG_SIZE
    assert sum(map(len, chunks)) == ciphertext_size(size, SMALL)
    # The ciphertext hides the plaintext (not a pass-through). Only from 16 bytes on: a shorter random
    # plaintext turns up inside random ciphertext by chance (a 1-byte one in ~6% of runs).
    if size >= 16:
        assert data not in b"".join(chunks)


def test_empty_input_is_one_final_tag_only_chunk() -> None:
    chunks = seal(b"")
    assert len(chunks) == 1 and len(chunks[0]) == TAG_SIZE
    assert unseal(chunks) == b""
    # and it really is the *final* chunk 0
    dec = ChunkDecryptor(KEY, DIGEST, SMALL)
    assert dec.decrypt_chunk(0, chunks[0], final=True) == b""
    with pytest.raises(AuthenticationError):
        dec.decrypt_chunk(0, chunks[0], final=False)


def test_empty_ciphertext_is_refused() -> None:
    """Truncation to nothing must not pass as an empty payload."""
    with pytest.raises(AuthenticationError, match="final chunk is missing"):
        unseal([])
    with pytest.raises(AuthenticationError):
        unseal([b"", b""])


def test_several_mib_with_default_chunk_size() -> None:
    data = os.urandom(3 * PLAINTEXT_CHUNK_SIZE + 12345)
    pieces = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    chunks = list(ChunkEncryptor(KEY, DIGEST).encrypt_stream(pieces))
    assert [len(c) for c in chunks] == [PLAINTEXT_CHUNK_SIZE + TAG_SIZE] * 3 + [12345 + TAG_SIZE]
    # decrypt from odd-sized, mutable pieces that the producer reuses
    blob = b"".join(chunks)
    reused = bytearray(77_777)

    def mutable_pieces():
        for i in range(0, len(blob), len(reused)):
            part = blob[i : i + len(reused)]
            reused[: len(part)] = part
            yield memoryview(reused)[: len(part)]
            reused[:] = b"\xee" * len(reused)  # the producer scribbles over its buffer

    out = b"".join(ChunkDecryptor(KEY, DIGEST).decrypt_stream(mutable_pieces()))
    assert out == data


def test_reused_mutable_input_buffer_on_encrypt() -> None:
    data = os.urandom(5 * SMALL + 7)
    buf = bytearray(SMALL)

    def pieces():
        for i in range(0, len(data), SMALL):
            part = data[i : i + SMALL]
            buf[: len(part)] = part
            yield memoryview(buf)[: len(part)]
            buf[:] = bytes(SMALL)

    assert unseal(ChunkEncryptor(KEY, DIGEST, SMALL).encrypt_stream(pieces())) == data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=700),
    chunk_size=st.integers(1, 130),
    enc_cuts=st.lists(st.integers(0, 10_000), max_size=12),
    dec_cuts=st.lists(st.integers(0, 10_000), max_size=12),
    kinds=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_round_trip_any_split(data, chunk_size, enc_cuts, dec_cuts, kinds) -> None:
    pieces = [kinds(p) for p in split(data, enc_cuts)]
    pieces.insert(len(pieces) // 2, b"")  # empty pieces are harmless
    chunks = list(ChunkEncryptor(KEY, DIGEST, chunk_size).encrypt_stream(pieces))
    # Output never depends on how the input was split: compare with one-piece encryption chunk by
    # chunk through decryption (nonces are deterministic, so the ciphertext is identical too).
    assert chunks == list(ChunkEncryptor(KEY, DIGEST, chunk_size).encrypt_stream([data]))
    blob = b"".join(chunks)
    assert len(blob) == ciphertext_size(len(data), chunk_size)
    dec_pieces = [kinds(p) for p in split(blob, dec_cuts)]
    assert b"".join(ChunkDecryptor(KEY, DIGEST, chunk_size).decrypt_stream(dec_pieces)) == data


def test_chunk_level_api_matches_stream() -> None:
    data = os.urandom(2 * SMALL + 5)
    enc = ChunkEncryptor(KEY, DIGEST, SMALL)
    manual = [
        enc.encrypt_chunk(0, data[:SMALL], final=False),
        enc.encrypt_chunk(1, data[SMALL : 2 * SMALL], final=False),
        enc.encrypt_chunk(2, data[2 * SMALL :], final=True),
    ]
    assert manual == seal(data)
    dec = ChunkDecryptor(KEY, DIGEST, SMALL)
    assert b"".join(dec.decrypt_chunk(i, c, final=i == 2) for i, c in enumerate(manual)) == data
    with pytest.raises(UsageError):
        enc.encrypt_chunk(0, data[:5], final=False)  # a short chunk can only be the last
    with pytest.raises(UsageError):
        enc.encrypt_chunk(0, data[: SMALL + 1], final=True)
    with pytest.raises(UsageError):
        enc.encrypt_chunk(1 << 88, b"", final=True)  # counter overflow
    with pytest.raises(UsageError):
        enc.encrypt_chunk(-1, b"", final=True)


def test_same_key_different_digest_gives_different_ciphertext() -> None:
    data = os.urandom(100)
    assert seal(data) != seal(data, digest=bytes(32))


def test_subkeys_are_distinct_and_deterministic() -> None:
    a = derive_subkey(KEY, b"dbs payload")
    assert a == derive_subkey(KEY, b"dbs payload") and len(a) == 32
    assert a != derive_subkey(KEY, b"dbs manifest") and a != KEY
    # The payload is not encrypted under the raw data key.
    chunk = seal(b"hello")[0]
    nonce = bytes(11) + b"\x01"
    assert AESGCM(a).decrypt(nonce, chunk, DIGEST) == b"hello"
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt(nonce, chunk, DIGEST)
    with pytest.raises(UsageError):
        derive_subkey(KEY[:16], b"x")
    with pytest.raises(UsageError):
        derive_subkey(KEY, b"")


# --- tampering: every case raises AuthenticationError


@pytest.fixture
def chunks() -> list[bytes]:
    return seal(os.urandom(4 * SMALL + 10))  # 5 chunks, the last one short


def test_flipped_bit_anywhere_fails(chunks) -> None:
    blob = b"".join(chunks)
    for pos in range(0, len(blob), 7):
        bad = bytearray(blob)
        bad[pos] ^= 0x10
        with pytest.raises(AuthenticationError):
            unseal([bytes(bad)])


def test_swapped_chunks_fail(chunks) -> None:
    chunks[1], chunks[2] = chunks[2], chunks[1]
    with pytest.raises(AuthenticationError):
        unseal(chunks)


def test_dropped_last_chunk_fails(chunks) -> None:
    """Cut at a chunk boundary: the new last chunk was sealed as non-final."""
    with pytest.raises(AuthenticationError):
        unseal(chunks[:-1])


def test_dropped_last_full_chunk_fails() -> None:
    chunks = seal(os.urandom(3 * SMALL))  # every chunk full, the last one final
    assert len(chunks) == 3
    with pytest.raises(AuthenticationError):
        unseal(chunks[:-1])


def test_dropped_middle_chunk_fails(chunks) -> None:
    del chunks[2]
    with pytest.raises(AuthenticationError):
        unseal(chunks)


def test_appended_chunk_fails(chunks) -> None:
    with pytest.raises(AuthenticationError):
        unseal([*chunks, chunks[0]])
    with pytest.raises(AuthenticationError):
        unseal([*chunks, b"\x00"])


def test_data_after_full_final_chunk_fails() -> None:
    chunks = seal(os.urandom(2 * SMALL))
    with pytest.raises(AuthenticationError):
        unseal([*chunks, os.urandom(SMALL + TAG_SIZE)])


def test_truncation_inside_a_chunk_fails(chunks) -> None:
    blob = b"".join(chunks)
    for cut in (1, TAG_SIZE - 1, TAG_SIZE, SMALL, len(blob) - 1):
        with pytest.raises(AuthenticationError):
            unseal([blob[:cut]])


def test_duplicated_chunk_fails(chunks) -> None:
    with pytest.raises(AuthenticationError):
        unseal([chunks[0], *chunks])


def test_chunk_from_another_file_with_other_header_fails(chunks) -> None:
    """Same data key (worst case) but another header digest: splicing still fails."""
    other = seal(os.urandom(4 * SMALL + 10), digest=b"\x55" * 32)
    spliced = [*chunks[:2], other[2], *chunks[3:]]
    with pytest.raises(AuthenticationError):
        unseal(spliced)


def test_wrong_header_digest_fails(chunks) -> None:
    with pytest.raises(AuthenticationError):
        unseal(chunks, digest=bytes(32))


def test_wrong_key_fails(chunks) -> None:
    with pytest.raises(AuthenticationError):
        unseal(chunks, key=bytes(32))


def test_wrong_chunk_size_fails(chunks) -> None:
    with pytest.raises(AuthenticationError):
        unseal(chunks, chunk_size=SMALL * 2)


def test_no_plaintext_released_from_a_bad_chunk(chunks) -> None:
    """Chunks before the damage come out; the damaged one never does."""
    bad = list(chunks)
    bad[2] = bytes([bad[2][0] ^ 1]) + bad[2][1:]
    got: list[bytes] = []
    with pytest.raises(AuthenticationError, match="chunk 2"):
        for plain in ChunkDecryptor(KEY, DIGEST, SMALL).decrypt_stream(bad):
            got.append(plain)
    assert len(got) == 2 and all(len(p) == SMALL for p in got)


def test_decrypt_chunk_rejects_impossible_lengths() -> None:
    dec = ChunkDecryptor(KEY, DIGEST, SMALL)
    for length, final in ((TAG_SIZE - 1, True), (SMALL + TAG_SIZE + 1, True), (SMALL, False)):
        with pytest.raises(AuthenticationError):
            dec.decrypt_chunk(0, bytes(length), final=final)


def test_bad_arguments_are_usage_errors() -> None:
    for args in ((KEY, DIGEST[:31], SMALL), (KEY[:31], DIGEST, SMALL), (KEY, DIGEST, 0)):
        with pytest.raises(UsageError):
            ChunkEncryptor(*args)
    with pytest.raises(UsageError):
        ChunkDecryptor(KEY, DIGEST, MAX_CHUNK_SIZE + 1)  # a hostile header's chunk size
    assert issubclass(AuthenticationError, SealedError)


def test_memory_stays_constant_on_a_long_stream() -> None:
    """128 MiB through encrypt+decrypt, generated lazily: peak RSS must not grow with the length."""
    piece = os.urandom(1 << 20)
    enc = ChunkEncryptor(KEY, DIGEST)
    dec = ChunkDecryptor(KEY, DIGEST)
    total = 0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for plain in dec.decrypt_stream(enc.encrypt_stream(piece for _ in range(128))):
        assert plain == piece
        total += len(plain)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert total == 128 << 20
    assert grown_kib < 24 * 1024, f"peak RSS grew by {grown_kib} KiB"


# --- docs/FORMAT.md, sections 7.3, 7.4 and 7.8: an independent reading of the spec


def _hkdf_sha256(ikm: bytes, info: bytes, salt: bytes = bytes(32)) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # L = 32: one block


def test_documented_vectors() -> None:
    key, digest = bytes(range(32)), bytes(range(100, 132))
    subkey = _hkdf_sha256(key, b"dbs payload")
    assert subkey.hex() == "3b808e64523bf7f1a34dfa687513f0a7eaf71e86dbc221066c0e0fdd85d9d485"
    assert derive_subkey(key, b"dbs payload") == subkey
    assert [c.hex() for c in ChunkEncryptor(key, digest, 4).encrypt_stream([b""])] == [
        "6bb3bedbe8d0b307481033725faab87d"
    ]
    expected = ["dfedea40f48e7d19fc29718056e35eba0f0585f3", "d328b2c966b14b08689924fce23eca4cb84a"]
    assert [c.hex() for c in ChunkEncryptor(key, digest, 4).encrypt_stream([b"abc", b"def"])] == expected
    # the same from the spec's formulas with the raw primitive
    gcm = AESGCM(subkey)
    assert gcm.encrypt(bytes(11) + b"\x00", b"abcd", digest).hex() == expected[0]
    assert gcm.encrypt((1).to_bytes(11, "big") + b"\x01", b"ef", digest).hex() == expected[1]
