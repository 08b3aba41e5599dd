"""Round trips through seal / open_sealed / verify / heal / info on real files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbs_admin.sealed import (
    DestinationExistsError,
    NoKeyError,
    UsageError,
    WrongIdentityError,
    WrongPassphraseError,
    generate_identity,
    heal,
    info,
    open_sealed,
    seal,
    verify,
)
from dbs_admin.sealed.aead import PLAINTEXT_CHUNK_SIZE
from dbs_admin.sealed.layout import BLOCK_SIZE

from .conftest import CHEAP, PASSPHRASE, random_bytes, seal_bytes

BOUNDARIES = [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, PLAINTEXT_CHUNK_SIZE - 1,
              PLAINTEXT_CHUNK_SIZE, PLAINTEXT_CHUNK_SIZE + 1, 3 * BLOCK_SIZE + 17]


@pytest.mark.parametrize("size", BOUNDARIES)
def test_round_trip_at_boundaries(tmp_path, size):
    data = random_bytes(size, seed=size)
    path = seal_bytes(data, tmp_path / "f.dbs", manifest={"size": size})
    with open_sealed(path, passphrase=PASSPHRASE) as reader:
        assert reader.read() == data
        assert reader.manifest == {"size": size}
        assert reader.healed_blocks == []
    report = verify(path, passphrase=PASSPHRASE)
    assert report.ok and report.intact and report.decrypted and report.healing_margin == 1.0


def test_a_manifest_completed_while_the_source_streams_is_stored_complete(tmp_path):
    """What is known only at the end (hashes of what streamed) can go in the manifest: it is read after the
    last piece of the source, and it is the object's state then that is stored."""
    import hashlib

    manifest: dict = {"kind": "test"}
    pieces = [random_bytes(300_000, seed=n) for n in range(3)]

    def source():
        digest = hashlib.sha256()
        for piece in pieces:
            digest.update(piece)
            yield piece
        manifest["sha256"] = digest.hexdigest()

    seal_bytes(source(), tmp_path / "f.dbs", manifest=manifest)
    with open_sealed(tmp_path / "f.dbs", passphrase=PASSPHRASE) as reader:
        assert reader.manifest == {"kind": "test", "sha256": hashlib.sha256(b"".join(pieces)).hexdigest()}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300_000), compressible=st.booleans())
@example(data=b"", compressible=False)
@example(data=b"x", compressible=True)
def test_round_trip_hypothesis(tmp_path_factory, data, compressible):
    if compressible:
        data = data * 7
    path = seal_bytes(data, tmp_path_factory.mktemp("h") / "f.dbs")
    with open_sealed(path, passphrase=PASSPHRASE) as reader:
        assert b"".join(reader) == data


def test_round_trip_100_mb(tmp_path):
    """One large case: many AEAD chunks and hundreds of blocks, read back in odd-sized reads."""
    size = 100 * 1000 * 1000
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for i in range(0, size, 1 << 22):
            n = min(1 << 22, size - i)
            f.write(random_bytes(n, seed=i) if i % (1 << 24) else bytes(n))  # some runs of zeros
    report = seal(src, tmp_path / "big.dbs", passphrase=PASSPHRASE, **CHEAP)
    assert report.input_size == size and report.verified
    out = tmp_path / "big.out"
    with open_sealed(tmp_path / "big.dbs", passphrase=PASSPHRASE) as reader:
        assert reader.read_all_to(out) == size
    with open(src, "rb") as a, open(out, "rb") as b:
        while True:
            x, y = a.read(1 << 22), b.read(1 << 22)
            assert x == y
            if not x:
                break


def test_source_kinds(tmp_path):
    data = random_bytes(200_000, seed=3)
    (tmp_path / "in.bin").write_bytes(data)
    sources = {
        "path": tmp_path / "in.bin",
        "str": str(tmp_path / "in.bin"),
        "file": io.BytesIO(data),
        "iterable": (data[i : i + 999] for i in range(0, len(data), 999)),
        "bytes": data,
    }
    for name, source in sources.items():
        path = tmp_path / f"{name}.dbs"
        report = seal(source, path, passphrase=PASSPHRASE, **CHEAP)
        assert report.input_size == len(data)
        with open_sealed(path, passphrase=PASSPHRASE) as reader:
            chunks = []
            while chunk := reader.read(12345):
                chunks.append(chunk)
        assert b"".join(chunks) == data, name


def test_recipients_and_identity(tmp_path):
    identity = generate_identity(tmp_path / "id", "id pass", argon2=CHEAP["argon2"], allow_weak=True)
    other = generate_identity(tmp_path / "other", "id pass", argon2=CHEAP["argon2"], allow_weak=True)
    data = random_bytes(70_000)
    path = tmp_path / "r.dbs"
    seal(data, path, recipients=[identity.recipient])  # a server that cannot read it: no passphrase
    with open_sealed(path, identity=identity) as reader:
        assert reader.read() == data
    with pytest.raises(WrongIdentityError):
        open_sealed(path, identity=other)
    with pytest.raises(NoKeyError):
        open_sealed(path)
    assert [s["type"] for s in info(path)["key_slots"]] == ["recipient"]


def test_wrong_passphrase_yields_no_data(tmp_path):
    path = seal_bytes(b"secret rows", tmp_path / "f.dbs")
    with pytest.raises(WrongPassphraseError):
        open_sealed(path, passphrase="not it")
    with pytest.raises(WrongPassphraseError):
        verify(path, passphrase="not it")


def test_refuses_to_overwrite_and_leaves_no_temporary_files(tmp_path):
    path = seal_bytes(b"one", tmp_path / "f.dbs")
    before = path.read_bytes()
    with pytest.raises(DestinationExistsError):
        seal_bytes(b"two", path)
    assert path.read_bytes() == before
    seal_bytes(b"two", path, overwrite=True)
    with open_sealed(path, passphrase=PASSPHRASE) as reader:
        assert reader.read() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.dbs"]


def test_failed_seal_publishes_nothing(tmp_path):
    def source():
        yield b"a" * 500_000
        raise RuntimeError("the database went away mid-backup")

    with pytest.raises(RuntimeError):
        seal(source(), tmp_path / "f.dbs", passphrase=PASSPHRASE, **CHEAP)
    assert list(tmp_path.iterdir()) == []


def test_manifest_must_be_json(tmp_path):
    with pytest.raises(UsageError):
        seal_bytes(b"x", tmp_path / "f.dbs", manifest={"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_heal_of_intact_file_is_byte_identical(sealed_sample, tmp_path):
    src, _ = sealed_sample
    report = heal(src, tmp_path / "healed.dbs")
    assert not report.was_damaged
    assert (tmp_path / "healed.dbs").read_bytes() == src.read_bytes()


def test_info_needs_no_key(sealed_sample):
    src, data = sealed_sample
    meta = info(src)
    assert meta["format_version"] == 1
    assert meta["block_size"] == BLOCK_SIZE
    assert meta["block_count"] == -(-meta["data_length"] // BLOCK_SIZE)
    assert meta["size"] == os.path.getsize(src)
    assert all(r["copies_intact"] == 2 for r in meta["regions"].values())


def test_read_all_to_publishes_only_after_authentication(sealed_sample, tmp_path):
    src, data = sealed_sample
    out = tmp_path / "out.bin"
    with open_sealed(src, passphrase=PASSPHRASE) as reader:
        assert reader.read_all_to(out) == len(data)
    assert out.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert Path(out).stat().st_size == len(data)


def test_stopping_early_leaves_no_threads_behind(sealed_sample):
    import threading

    src, data = sealed_sample
    before = threading.active_count()
    with open_sealed(src, passphrase=PASSPHRASE) as reader:
        assert reader.read(100) == data[:100]
    assert threading.active_count() == before


def test_crash_mid_write_leaves_nothing_that_looks_complete(tmp_path):
    """SIGKILL the sealing process half way: no destination, and the temporary file is not a backup."""
    import signal
    import subprocess
    import sys
    import time

    from dbs_admin.sealed import SealedError

    script = (
        "import os, time\n"
        "from dbs_admin.sealed import seal, Argon2Params\n"
        "def slow():\n"
        "    for i in range(10_000):\n"
        "        yield os.urandom(300_000)\n"
        "        time.sleep(0.01)\n"
        f"seal(slow(), {str(tmp_path / 'crash.dbs')!r}, passphrase='p',\n"
        "     argon2=Argon2Params(1, 1024, 1), allow_weak_argon2=True)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(root)})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            temps = list(tmp_path.glob("crash.dbs.tmp-*"))
            if temps and temps[0].stat().st_size > 3_000_000:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (tmp_path / "crash.dbs").exists()
    temps = list(tmp_path.glob("crash.dbs.tmp-*"))
    assert temps, "the writer should have been killed while writing its temporary file"
    try:
        report = verify(temps[0])
    except SealedError:
        return
    assert not report.ok or not report.intact


@pytest.mark.parametrize("size", [0, BLOCK_SIZE + 1, 40 * BLOCK_SIZE + 3])  # none, one batch, two batches
def test_seal_report_carries_the_sha256_of_the_file_as_written(tmp_path, size):
    """Callers record and publish this hash without reading the file again, so it must be the file's own."""
    import hashlib

    dest = tmp_path / "f.dbs"
    report = seal(random_bytes(size, seed=7), dest, passphrase=PASSPHRASE, **CHEAP, file_sha256=True)
    assert report.verified
    assert report.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    unchecked = seal(b"x", tmp_path / "g.dbs", passphrase=PASSPHRASE, **CHEAP, file_sha256=True,
                     verify_after_write=False)
    assert unchecked.sha256 is None  # no read-back, no hash claimed
    assert seal(b"x", tmp_path / "h.dbs", passphrase=PASSPHRASE, **CHEAP).sha256 is None  # only on request


@pytest.mark.parametrize("offset", [100, -150])
def test_verify_after_write_catches_metadata_the_storage_changed(tmp_path, monkeypatch, offset):
    """Flip a bit of the metadata (the first header, the trailing records) in the written temporary file just
    before it is verified: nothing is published."""
    from dbs_admin.sealed import SealedError, container

    original = container.ContainerWriter.check_written

    def storage_flips_a_bit(self, path):
        with open(path, "r+b") as f:
            f.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
            where = f.tell()
            byte = f.read(1)
            f.seek(where)
            f.write(bytes([byte[0] ^ 0x10]))
        return original(self, path)

    monkeypatch.setattr(container.ContainerWriter, "check_written", storage_flips_a_bit)
    with pytest.raises(SealedError, match="verification after writing"):
        seal_bytes(random_bytes(500_000), tmp_path / "f.dbs")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("record", [0, 3, 7])
def test_verify_after_write_catches_a_data_record_the_storage_changed_in_copy_a(tmp_path, monkeypatch, record):
    """The storage keeps a different byte than it was given for one record of copy A (the writer's own bytes and
    CRC-32s are right): the read-back of that batch finds it, and nothing is published."""
    from dbs_admin.sealed import SealedError, container

    original = container.write_all
    pieces = [0]

    def storage_keeps_a_flipped_bit(f, piece):
        if len(piece) >= 4096 and pieces[0] // 2 == record and pieces[0] % 2 == 0:  # the data part of the record
            view = bytearray(piece)
            view[1234] ^= 0x04
            piece = bytes(view)
        if len(piece) >= 4096:
            pieces[0] += 1
        return original(f, piece)

    monkeypatch.setattr(container, "write_all", storage_keeps_a_flipped_bit)
    with pytest.raises(SealedError, match=f"verification after writing .* failed near block {record}"):
        seal_bytes(random_bytes(600_000), tmp_path / "f.dbs")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", [10, 200_000, -10])
def test_verify_after_write_catches_copy_b_changed_as_it_was_copied(tmp_path, monkeypatch, where):
    """Copy B comes out of the in-kernel copy with one byte different: its read-back finds it."""
    from dbs_admin.sealed import SealedError, container

    original = container._copy_range

    def copy_that_damages(f, src, dst, length):
        original(f, src, dst, length)
        if dst > src:  # copy B only
            at = dst + (where if where >= 0 else length + where)
            if dst <= at < dst + length:
                byte = os.pread(f.fileno(), 1, at)
                os.pwrite(f.fileno(), bytes([byte[0] ^ 0x80]), at)

    monkeypatch.setattr(container, "_copy_range", copy_that_damages)
    with pytest.raises(SealedError, match="verification after writing"):
        seal_bytes(random_bytes(500_000), tmp_path / "f.dbs")
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_bounded_while_streaming(tmp_path):
    """Seal and read back 256 MiB in a child process: peak RSS stays far below the data size."""
    import subprocess
    import sys

    script = f"""
import os
from dbs_admin.sealed import seal, open_sealed, Argon2Params
def pieces():
    for i in range(256):
        yield (os.urandom(1 << 20) if i % 4 == 0 else bytes([i]) * (1 << 20))
cheap = dict(argon2=Argon2Params(1, 1024, 1), allow_weak_argon2=True)
seal(pieces(), {str(tmp_path / 'm.dbs')!r}, passphrase="p", **cheap)
total = 0
with open_sealed({str(tmp_path / 'm.dbs')!r}, passphrase="p") as reader:
    for chunk in reader:
        total += len(chunk)
assert total == 256 << 20, total
# VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024)
"""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.strip())
    assert peak_mib < 200, f"peak RSS {peak_mib} MiB"
