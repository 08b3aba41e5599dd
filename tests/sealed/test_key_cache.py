"""A process keeps the repository keys it unwrapped with a passphrase: Argon2 runs once per repository.

Argon2 is counted with a spy that still runs the real function; a wrong
passphrase, another repository or changed key slots never get a kept key.
"""

from __future__ import annotations

import pytest

from dbs_admin.sealed import WrongPassphraseError, keys
from dbs_admin.sealed.repo import DirectoryStore, Repository
from dbs_admin.sealed.repo.keyfile import forget_unwrapped_keys

from .conftest import CHEAP, PASSPHRASE


@pytest.fixture
def argon2_calls(monkeypatch):
    calls = []
    real = keys._argon2id

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(keys, "_argon2id", counting)
    forget_unwrapped_keys()
    yield calls
    forget_unwrapped_keys()


def test_argon2_runs_once_per_repository_and_passphrase(tmp_path, argon2_calls):
    store = DirectoryStore(tmp_path / "a")
    Repository.init(store, passphrase=PASSPHRASE, **CHEAP)
    argon2_calls.clear()
    first = Repository.open(store, passphrase=PASSPHRASE)
    again = Repository.open(store, passphrase=PASSPHRASE)
    assert len(argon2_calls) == 1 and first.rkey == again.rkey
    with pytest.raises(WrongPassphraseError):
        Repository.open(store, passphrase="not it")
    with pytest.raises(WrongPassphraseError):
        Repository.open(store, passphrase="not it")
    assert len(argon2_calls) == 3, "a wrong passphrase is never kept: every attempt pays Argon2"

    other = DirectoryStore(tmp_path / "b")
    Repository.init(other, passphrase=PASSPHRASE, **CHEAP)
    argon2_calls.clear()
    assert Repository.open(other, passphrase=PASSPHRASE).rkey != first.rkey
    assert len(argon2_calls) == 1, "another repository's slots miss the cache"
    forget_unwrapped_keys()
    Repository.open(store, passphrase=PASSPHRASE)
    assert len(argon2_calls) == 2
