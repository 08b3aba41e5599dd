"""Deliberate tampering by someone who can recompute every hash and parity byte (but has no key).

The attacker here rebuilds a perfectly consistent container (the same code
``heal`` uses) around edited parts; only the AEAD can and must catch it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dbs_admin.sealed import AuthenticationError, SealedError, open_sealed, verify
from dbs_admin.sealed.blocks import BlockReader
from dbs_admin.sealed.container import ContainerWriter
from dbs_admin.sealed.layout import HEADER_FIXED, Header
from dbs_admin.sealed.metadata import file_size_of
from dbs_admin.sealed.structure import load_structure

from .conftest import PASSPHRASE, random_bytes, seal_bytes


def parts(path: Path) -> tuple[bytes, bytes, bytes]:
    """(header payload, data stream, manifest payload) of an intact file."""
    with open(path, "rb") as f:
        size = file_size_of(f)
        st = load_structure(f, size)
        stream = b"".join(BlockReader(f, size, st.table).iter_data())
    return st.header_payload, stream, st.manifest_payload


def rebuild(dest: Path, header_payload: bytes, stream: bytes, manifest_payload: bytes) -> Path:
    """A fully consistent container (hashes, parity, both copies, locator) around the given parts."""
    with open(dest, "w+b") as f:
        writer = ContainerWriter(f, Header.unpack(header_payload), header_payload)
        try:
            writer.feed(stream)
            writer.finish(manifest_payload)
        finally:
            writer.close()
    assert verify(dest).intact  # structurally perfect: only cryptography can object
    return dest


def read_all(path: Path) -> bytes:
    with open_sealed(path, passphrase=PASSPHRASE) as reader:
        return reader.read()


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tamper")
    a_data, b_data = random_bytes(2_500_000, seed=21), random_bytes(2_500_000, seed=22)
    a = seal_bytes(a_data, d / "a.dbs", manifest={"name": "a"})
    b = seal_bytes(b_data, d / "b.dbs", manifest={"name": "b"})
    return (a, a_data), (b, b_data)


def test_rebuild_without_edits_still_reads(two_files, tmp_path):
    (a, a_data), _ = two_files
    assert read_all(rebuild(tmp_path / "same.dbs", *parts(a))) == a_data


def test_header_edit_with_recomputed_protection_fails_authentication(two_files, tmp_path):
    (a, _), _ = two_files
    header, stream, manifest = parts(a)
    edited = bytearray(header)
    created_at = 20  # version, flags, file id
    struct.pack_into("<Q", edited, created_at, 12345)
    assert len(edited) == len(header) and HEADER_FIXED.size < len(edited)
    path = rebuild(tmp_path / "edited.dbs", bytes(edited), stream, manifest)
    with pytest.raises(AuthenticationError):
        read_all(path)
    report = verify(path, passphrase=PASSPHRASE)
    assert not report.ok and report.exit_code == 2


def test_splicing_data_of_another_file_fails(two_files, tmp_path):
    (a, _), (b, _) = two_files
    a_header, _, a_manifest = parts(a)
    _, b_stream, b_manifest = parts(b)
    with pytest.raises(AuthenticationError):
        read_all(rebuild(tmp_path / "s1.dbs", a_header, b_stream, a_manifest))
    with pytest.raises(AuthenticationError):
        read_all(rebuild(tmp_path / "s2.dbs", a_header, b_stream, b_manifest))


def test_reordered_blocks_fail_authentication(two_files, tmp_path):
    (a, _), _ = two_files
    header, stream, manifest = parts(a)
    block = 65536
    swapped = stream[:block] + stream[2 * block : 3 * block] + stream[block : 2 * block] + stream[3 * block :]
    with pytest.raises(AuthenticationError):
        read_all(rebuild(tmp_path / "r.dbs", header, swapped, manifest))


def test_reordered_aead_chunks_fail_authentication(two_files, tmp_path):
    (a, _), _ = two_files
    header, stream, manifest = parts(a)
    chunk = (1 << 20) + 16
    swapped = stream[chunk : 2 * chunk] + stream[:chunk] + stream[2 * chunk :]
    with pytest.raises(AuthenticationError):
        read_all(rebuild(tmp_path / "c.dbs", header, swapped, manifest))


def test_truncated_stream_with_consistent_metadata_fails(two_files, tmp_path):
    (a, _), _ = two_files
    header, stream, manifest = parts(a)
    chunk = (1 << 20) + 16
    for cut in (stream[: 2 * chunk], stream[:-1]):
        path = rebuild(tmp_path / "t.dbs", header, cut, manifest)
        with pytest.raises(AuthenticationError):
            read_all(path)
        out = tmp_path / "out.bin"
        with pytest.raises(SealedError), open_sealed(path, passphrase=PASSPHRASE) as reader:
            reader.read_all_to(out)
        assert not out.exists()
        path.unlink()


def test_manifest_of_another_file_fails(two_files, tmp_path):
    (a, _), (b, _) = two_files
    header, stream, _ = parts(a)
    _, _, b_manifest = parts(b)
    with pytest.raises(AuthenticationError):
        open_sealed(rebuild(tmp_path / "m.dbs", header, stream, b_manifest), passphrase=PASSPHRASE)


def test_future_format_version_is_refused_as_such(two_files, tmp_path):
    """A well-formed record of version 2 must be reported as unsupported, not as damage."""
    import numpy as np

    from dbs_admin.sealed import UnsupportedVersionError
    from dbs_admin.sealed import rs as rs_module
    from dbs_admin.sealed.layout import PREFIX

    (a, _), _ = two_files
    buf = bytearray(a.read_bytes())
    message = bytearray(buf[: PREFIX.size])
    message[9] = 2  # version
    parity = rs_module.encode_parity(np.frombuffer(bytes(message), dtype=np.uint8).reshape(-1, 1))
    buf[: PREFIX.size] = message
    buf[PREFIX.size : PREFIX.size + rs_module.NSYM] = parity[:, 0].tobytes()
    path = tmp_path / "v2.dbs"
    path.write_bytes(bytes(buf))
    with pytest.raises(UnsupportedVersionError):
        verify(path)
