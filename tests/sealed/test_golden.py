"""Frozen golden files of every released format version must open forever (restic, borg)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest

from dbs_admin.sealed import info, load_identity, open_sealed, verify

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
EXPECTED = json.loads((GOLDEN / "v1.json").read_text())


def _check(path: Path, **key) -> None:
    with open_sealed(path, **key) as reader:
        data = reader.read()
        assert reader.manifest == EXPECTED["manifest"]
    assert len(data) == EXPECTED["plaintext_size"]
    assert hashlib.sha256(data).hexdigest() == EXPECTED["plaintext_sha256"]


def test_v1_passphrase_golden_file():
    path = GOLDEN / "v1-passphrase.dbs"
    assert info(path)["format_version"] == EXPECTED["format_version"]
    assert verify(path).intact
    _check(path, passphrase=EXPECTED["passphrase"])


def test_v1_recipient_golden_file():
    identity = load_identity(GOLDEN / "v1-identity.txt", EXPECTED["identity_passphrase"])
    _check(GOLDEN / "v1-recipient.dbs", identity=identity)


@pytest.mark.parametrize("seed", [1, 2])
def test_damaged_golden_file_still_heals(tmp_path, seed):
    path = tmp_path / "g.dbs"
    shutil.copyfile(GOLDEN / "v1-passphrase.dbs", path)
    buf = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for start in range(0, len(buf), 512):
        buf[rng.randrange(start, min(start + 512, len(buf)))] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(buf))
    report = verify(path)
    assert report.ok and not report.intact
    _check(path, passphrase=EXPECTED["passphrase"])
