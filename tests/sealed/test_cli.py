"""The rescue CLI run as a real subprocess: exit codes, --json, and no OUTPUT after a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import random_bytes

WEAK = ["--argon2-time-cost", "1", "--argon2-memory-kib", "1024", "--argon2-parallelism", "1",
        "--allow-weak-argon2"]
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("DBS_PASSPHRASE", None) if env is None or "DBS_PASSPHRASE" not in env else None
    return subprocess.run([sys.executable, "-m", "dbs_admin.sealed", *args], capture_output=True,
                          env=full_env, input=stdin if stdin is not None else b"", timeout=120)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    data = random_bytes(400_000, seed=41)
    (d / "in.bin").write_bytes(data)
    (d / "pw").write_text("cli passphrase\n")
    r = run("seal", str(d / "in.bin"), str(d / "f.dbs"), "--passphrase-file", str(d / "pw"), *WEAK)
    assert r.returncode == 0, r.stderr
    return d, data


def test_verify_and_decrypt_intact(sealed, tmp_path):
    d, data = sealed
    assert run("verify", str(d / "f.dbs")).returncode == 0
    r = run("verify", str(d / "f.dbs"), "--decrypt", "--json", env={"DBS_PASSPHRASE": "cli passphrase"})
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["decrypted"] and report["intact"]
    out = tmp_path / "out.bin"
    r = run("decrypt", str(d / "f.dbs"), str(out), "--passphrase-file", str(d / "pw"))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data


def test_info_and_heal(sealed, tmp_path):
    d, _ = sealed
    r = run("info", str(d / "f.dbs"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["format_version"] == 1
    r = run("heal", str(d / "f.dbs"), str(tmp_path / "h.dbs"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "h.dbs").read_bytes() == (d / "f.dbs").read_bytes()


def test_damaged_file_exit_1_and_exact_output(sealed, tmp_path):
    d, data = sealed
    damaged = tmp_path / "d.dbs"
    buf = bytearray((d / "f.dbs").read_bytes())
    for i in range(2000, 2000 + 4096):
        buf[i] ^= 0x5A
    damaged.write_bytes(bytes(buf))
    assert run("verify", str(damaged)).returncode == 1
    out = tmp_path / "out.bin"
    r = run("decrypt", str(damaged), str(out), "--passphrase-file", str(d / "pw"), "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["healed_blocks"] == [0]
    assert out.read_bytes() == data
    r = run("heal", str(damaged), str(tmp_path / "h.dbs"))
    assert r.returncode == 1
    assert (tmp_path / "h.dbs").read_bytes() == (d / "f.dbs").read_bytes()


def test_unrecoverable_exit_2_and_no_output(sealed, tmp_path):
    d, _ = sealed
    broken = tmp_path / "b.dbs"
    buf = bytearray((d / "f.dbs").read_bytes())
    half = len(buf) // 2
    for i in range(300, half + 80_000):  # copy A and block 0 of copy B: beyond any repair
        buf[i] ^= 0xA5
    broken.write_bytes(bytes(buf))
    out = tmp_path / "out.bin"
    r = run("decrypt", str(broken), str(out), "--passphrase-file", str(d / "pw"), "--json")
    assert r.returncode == 2
    assert json.loads(r.stdout)["unrecoverable_blocks"]
    assert not out.exists() and list(tmp_path.iterdir()) == [broken]
    assert run("verify", str(broken)).returncode == 2
    assert run("heal", str(broken), str(tmp_path / "h.dbs")).returncode == 2
    assert not (tmp_path / "h.dbs").exists()


def test_wrong_passphrase_exit_3_and_no_output(sealed, tmp_path):
    """A wrong key is not damage: its own status (3), the one dbs_validate uses too."""
    d, _ = sealed
    out = tmp_path / "out.bin"
    r = run("decrypt", str(d / "f.dbs"), str(out), env={"DBS_PASSPHRASE": "wrong"})
    assert r.returncode == 3 and b"passphrase" in r.stderr
    assert not out.exists()
    assert run("verify", "--decrypt", str(d / "f.dbs"), env={"DBS_PASSPHRASE": "wrong"}).returncode == 3


def test_not_sealed_and_empty_exit_2(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "noise").write_bytes(random_bytes(10_000))
    assert run("verify", str(tmp_path / "empty")).returncode == 2
    assert run("info", str(tmp_path / "noise")).returncode == 2


def test_usage_errors_exit_64(sealed, tmp_path):
    d, _ = sealed
    assert run().returncode == 64
    assert run("frobnicate").returncode == 64
    assert run("verify").returncode == 64
    assert run("seal", str(tmp_path / "missing"), str(tmp_path / "o.dbs"), "--passphrase-file",
               str(d / "pw")).returncode == 64
    # no passphrase anywhere and stdin is not a terminal: a usage error, never a hang
    assert run("seal", str(d / "in.bin"), str(tmp_path / "o.dbs")).returncode == 64
    # refuses to overwrite an existing output
    r = run("seal", str(d / "in.bin"), str(d / "f.dbs"), "--passphrase-file", str(d / "pw"), *WEAK)
    assert r.returncode == 64 and b"exists" in r.stderr
    assert not (tmp_path / "o.dbs").exists()


def test_keygen_recipient_and_identity(tmp_path):
    env = {"DBS_PASSPHRASE": "identity passphrase"}
    r = run("keygen", str(tmp_path / "id.txt"), *WEAK, env=env)
    assert r.returncode == 0, r.stderr
    recipient = r.stdout.decode().strip()
    assert recipient.startswith("dbs1")
    (tmp_path / "in.bin").write_bytes(b"rows" * 1000)
    # a server with only the public recipient: no passphrase needed or asked for
    r = run("seal", str(tmp_path / "in.bin"), str(tmp_path / "r.dbs"), "--recipient", recipient)
    assert r.returncode == 0, r.stderr
    r = run("decrypt", str(tmp_path / "r.dbs"), str(tmp_path / "out"), "--identity", str(tmp_path / "id.txt"),
            env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_bytes() == b"rows" * 1000


def test_seal_from_stdin(tmp_path):
    r = run("seal", "-", str(tmp_path / "s.dbs"), *WEAK, env={"DBS_PASSPHRASE": "p"}, stdin=b"piped " * 999)
    assert r.returncode == 0, r.stderr
    r = run("decrypt", str(tmp_path / "s.dbs"), str(tmp_path / "o"), env={"DBS_PASSPHRASE": "p"})
    assert r.returncode == 0 and (tmp_path / "o").read_bytes() == b"piped " * 999
