"""Zstd dictionaries of the repository (FORMAT.md R5a): trained once, used by every pack, healed like any object."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dbs_admin.sealed import UnrecoverableError
from dbs_admin.sealed.repo import DirectoryStore, Repository, check_repository, heal_repository
from dbs_admin.sealed.repo.objects import SealedObject
from dbs_admin.sealed.repo.packs import FLAG_DICT

from .conftest import CHEAP, PASSPHRASE
from .test_repository import _damage, backup, restored


def table(n: int, seed: int) -> list[bytes]:
    """Rows like a blog's: the same field names and vocabulary in every row, different values."""
    rng = random.Random(seed)
    words = [rng.randbytes(3).hex() for _ in range(400)]
    return [b'{"title": "%s", "slug": "post-%d", "body": "%s", "published": true}' % (
        " ".join(rng.choices(words, k=6)).encode(), i, " ".join(rng.choices(words, k=300)).encode())
        for i in range(n)]


def test_a_trained_dictionary_shrinks_small_chunks_and_everything_restores(tmp_path):
    rows = table(4000, 1)
    plain = Repository.init(DirectoryStore(tmp_path / "plain"), passphrase=PASSPHRASE, **CHEAP)
    plain_snap = plain.new_snapshot()  # the same rows, in chunks too few to train on: no dictionary
    plain_snap.packer._trainer = None
    plain_snap.packer._gathered = None
    plain_snap.set_stream("rows", plain_snap.add_records(rows))
    without = plain_snap.commit().added_bytes

    repo = Repository.init(DirectoryStore(tmp_path / "repo"), passphrase=PASSPHRASE, **CHEAP)
    first = backup(repo, rows, b"media")
    root = Path(repo.store.root)
    dicts = sorted((root / "dicts").iterdir())
    assert len(dicts) == 1 and dicts[0].name.startswith(first.name + ".")
    assert first.added_bytes < without * 0.8, (first.added_bytes, without)
    with SealedObject(repo.store, repo.store.list("packs")[0], kind="pack", **repo._kw()) as pack:
        assert pack.manifest["dict"] == "dicts/" + dicts[0].name
        assert any(flags & FLAG_DICT for _cid, _o, _l, _s, flags, _r in pack.manifest["entries"])
    rows2 = list(rows)
    rows2[100] = b"an edited row"
    second = backup(repo, rows2, b"media")
    assert len(list((root / "dicts").iterdir())) == 1, "later snapshots use the dictionary, not a new one"
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    assert restored(reopened, first.name) == (b"".join(rows), b"media")
    assert restored(reopened, second.name) == (b"".join(rows2), b"media")
    assert check_repository(repo.store, repo=reopened, read_data=True).ok


def test_a_damaged_dictionary_heals_and_a_lost_one_is_named(tmp_path):
    repo = Repository.init(DirectoryStore(tmp_path / "repo"), passphrase=PASSPHRASE, **CHEAP)
    rows = table(3000, 2)
    snap = backup(repo, rows, b"m")
    path = next((Path(repo.store.root) / "dicts").iterdir())
    name = "dicts/" + path.name
    original = path.read_bytes()
    _damage(path, "one copy destroyed")
    assert check_repository(repo.store).damaged == [name]
    assert heal_repository(repo.store).healed == [name] and path.read_bytes() == original
    _damage(path, "both copies destroyed")
    with pytest.raises(UnrecoverableError, match=name):
        restored(Repository.open(repo.store, passphrase=PASSPHRASE), snap.name)
    assert check_repository(repo.store).lost == [name]
