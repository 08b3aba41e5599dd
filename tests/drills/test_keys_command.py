"""``manage.py dbs_keys init``: unattended backups and drills set up in one step, with lines to paste."""

from __future__ import annotations

import re
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dbs_admin.drills.identity import identity_from_file
from dbs_admin.sealed import WrongPassphraseError, load_identity

WEAK = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1, "allow_weak": True}


@pytest.fixture
def weak_argon2(settings, tmp_path):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "ARGON2": WEAK, "PRIVATE_ROOT": str(tmp_path / "private")}


def init(*args: str) -> str:
    out = StringIO()
    call_command("dbs_keys", "init", *args, stdout=out)
    return out.getvalue()


def test_init_makes_the_pair_and_prints_what_to_add(weak_argon2, tmp_path, monkeypatch, settings):
    monkeypatch.delenv("DBS_DRILL_IDENTITY_PASSPHRASE", raising=False)
    out = init("--no-input")
    folder = tmp_path / "private" / "identity"  # the default: beside the site's other private files
    identity_path = folder / "drill.identity"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(identity_path.stat().st_mode) == 0o600
    [recipient] = re.findall(r'"RECIPIENTS": \["(dbs1[^"]+)"\]', out)
    assert f'"DRILL_IDENTITY": "{identity_path}"' in out
    [passphrase] = re.findall(r"DBS_DRILL_IDENTITY_PASSPHRASE=(\S+)", out)
    assert len(passphrase) >= 24 and passphrase not in identity_path.read_text()  # encrypted, printed once
    assert load_identity(identity_path, passphrase).recipient == recipient
    assert (folder / "drill.identity.recipient").read_text().strip() == recipient
    # What the printed lines configure is what drills use.
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": [recipient], "DRILL_IDENTITY": str(identity_path)}
    monkeypatch.setenv("DBS_DRILL_IDENTITY_PASSPHRASE", passphrase)
    assert identity_from_file(str(identity_path)).recipient == recipient
    with pytest.raises(CommandError, match="already exists"):  # backups sealed for it must stay readable
        init("--no-input")
    assert load_identity(identity_path, passphrase).recipient == recipient


def test_init_uses_the_passphrase_it_is_given_and_never_prints_it(weak_argon2, tmp_path, monkeypatch):
    monkeypatch.setenv("DBS_DRILL_IDENTITY_PASSPHRASE", "the worker's passphrase 123")
    out = init("--dir", str(tmp_path / "k1"))
    assert "the worker's passphrase" not in out and "<the passphrase of $DBS_DRILL_IDENTITY_PASSPHRASE>" in out
    load_identity(tmp_path / "k1" / "drill.identity", "the worker's passphrase 123")
    with pytest.raises(WrongPassphraseError):
        load_identity(tmp_path / "k1" / "drill.identity", "another")
    monkeypatch.delenv("DBS_DRILL_IDENTITY_PASSPHRASE")
    (tmp_path / "pw").write_text("from a file, long enough\n")
    init("--dir", str(tmp_path / "k2"), "--passphrase-file", str(tmp_path / "pw"))
    load_identity(tmp_path / "k2" / "drill.identity", "from a file, long enough")
    (tmp_path / "short").write_text("short\n")
    with pytest.raises(CommandError, match="at least 12 characters"):
        init("--dir", str(tmp_path / "k3"), "--passphrase-file", str(tmp_path / "short"))
    assert not (tmp_path / "k3" / "drill.identity").exists()
