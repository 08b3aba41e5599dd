"""Repositories on the real loopback sshd and the real moto S3 server (targets.repository_stores).

The same operations as the local repository's tests: incremental snapshots
that restore exactly, forget + garbage collection, a damaged pack healed
byte-exact or refused by name, locks keeping collection and backups apart,
and (SFTP) two processes backing up at once.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dbs_admin.sealed import UnrecoverableError
from dbs_admin.sealed.errors import DestinationExistsError
from dbs_admin.sealed.repo import Repository, check_repository, heal_repository
from dbs_admin.sealed.repo.locks import RepositoryBusyError
from dbs_admin.sealed.repo.prune import collect_garbage, forget
from dbs_admin.targets.configured import build_target
from dbs_admin.targets.repository_stores import S3Store, SftpStore
from tests.sealed.conftest import CHEAP, PASSPHRASE
from tests.sealed.test_repository import _damage, backup, restored, rows


class Remote:
    """A store plus raw access to its objects' bytes (to damage them as a disk or a bucket would)."""

    def __init__(self, store, read, write):
        self.store, self.read, self.write = store, read, write


@pytest.fixture(params=["sftp", "s3"])
def remote(request, tmp_path) -> Remote:
    if request.param == "sftp":
        entry = request.getfixturevalue("sftp_entry")
        store = SftpStore(build_target("offsite", entry))
        root = Path(entry["path"])  # the loopback server sees this machine's paths
        return Remote(store, lambda name: (root / name).read_bytes(),
                      lambda name, data: (root / name).write_bytes(data))
    alias = request.getfixturevalue("s3_storage")(location="site-a")
    target = build_target("bucket", {"kind": "storage", "storage": alias, "prefix": "repo"})
    store = S3Store(target)
    client, bucket = target.storage.connection.meta.client, target.storage.bucket_name

    def read(name: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=store._key(name))["Body"].read()

    def write(name: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=store._key(name), Body=data)

    return Remote(store, read, write)


def test_snapshots_restore_exactly_and_collection_keeps_the_rest(remote):
    repo = Repository.init(remote.store, passphrase=PASSPHRASE, **CHEAP)
    table, media = rows(1500), random.Random(2).randbytes(1 << 20)
    first = backup(repo, table, media, n=1)
    table2 = list(table)
    for i in range(0, 1500, 300):
        table2[i] = table2[i][:40] + b"edited " * 50
    second = backup(repo, table2, media + b"more", n=2)
    assert second.added_bytes < first.added_bytes / 5, (first.added_bytes, second.added_bytes)
    reopened = Repository.open(remote.store, passphrase=PASSPHRASE)
    assert restored(reopened, first.name) == (b"".join(table), media)
    assert restored(reopened, second.name) == (b"".join(table2), media + b"more")
    assert all(not n.split("/")[-1].startswith(".") for n in remote.store.list(""))

    forget(remote.store, first.name)
    before = sum(remote.store.size(n) for n in remote.store.list("packs"))
    report = collect_garbage(reopened)
    after = sum(remote.store.size(n) for n in remote.store.list("packs"))
    assert report.live_chunks > 0 and after <= before
    again = Repository.open(remote.store, passphrase=PASSPHRASE)
    assert [s.name for s in again.snapshots()] == [second.name]
    assert restored(again, second.name) == (b"".join(table2), media + b"more")
    assert check_repository(remote.store, repo=again, read_data=True).ok
    assert remote.store.list("locks") == [], "every lock is released"


def test_a_name_is_never_overwritten_but_healing_replaces(remote, tmp_path):
    obj = tmp_path / "obj"
    obj.write_bytes(b"first")
    remote.store.put_atomic("snapshots/x", obj)
    obj.write_bytes(b"second")
    with pytest.raises(DestinationExistsError, match="snapshots/x"):
        remote.store.put_atomic("snapshots/x", obj)
    assert remote.store.get("snapshots/x") == b"first"
    remote.store.put_atomic("snapshots/x", obj, replace=True)
    assert remote.store.get("snapshots/x") == b"second" and remote.store.get_range("snapshots/x", 1, 3) == b"eco"
    assert remote.store.list("snapshots") == ["snapshots/x"]
    with pytest.raises(FileNotFoundError):
        remote.store.size("snapshots/nothing")


def _damaged(remote: Remote, name: str, how: str) -> bytes:
    original = remote.read(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obj"
        path.write_bytes(original)
        _damage(path, how)
        remote.write(name, path.read_bytes())
    return original


def test_a_damaged_pack_heals_byte_exact_and_a_lost_one_is_named(remote):
    repo = Repository.init(remote.store, passphrase=PASSPHRASE, **CHEAP)
    table, media = rows(800), random.Random(3).randbytes(300_000)
    snap = backup(repo, table, media)
    pack = remote.store.list("packs")[0]
    original = _damaged(remote, pack, "one copy destroyed")
    assert remote.read(pack) != original
    assert restored(Repository.open(remote.store, passphrase=PASSPHRASE), snap.name) == (b"".join(table), media)
    found = check_repository(remote.store)
    assert found.ok and found.damaged == [pack]
    assert heal_repository(remote.store).healed == [pack]
    assert remote.read(pack) == original, "healing gives the object back byte for byte"

    _damaged(remote, pack, "both copies destroyed")
    with pytest.raises(UnrecoverableError, match=pack):
        restored(Repository.open(remote.store, passphrase=PASSPHRASE), snap.name)
    found = check_repository(remote.store)
    assert not found.ok and found.lost == [pack]


def test_collection_never_runs_beside_a_backup(remote):
    repo = Repository.init(remote.store, passphrase=PASSPHRASE, **CHEAP)
    backup(repo, rows(50), b"m")
    with repo.new_snapshot() as writer:  # a backup in progress holds its shared lock
        writer.set_stream("rows", writer.add_records(rows(10, seed=9)))
        with pytest.raises(RepositoryBusyError, match="in use"):
            collect_garbage(Repository.open(remote.store, passphrase=PASSPHRASE), wait=0)
        writer.commit()
    assert collect_garbage(repo).live_chunks > 0  # once it is done, collection proceeds


WRITER = """
import json, random, sys
from dbs_admin.sealed.repo import Repository
from dbs_admin.targets.repository_stores import SftpStore
from dbs_admin.targets.sftp import SftpTarget
entry = json.loads(sys.argv[1])
entry.pop("kind")
repo = Repository.open(SftpStore(SftpTarget("offsite", **entry)), passphrase=sys.argv[2])
rng = random.Random(int(sys.argv[3]))
snap = repo.new_snapshot()
snap.set_stream("rows", snap.add_records([rng.randbytes(2000) for _ in range(3000)]))
print(snap.commit(meta={"writer": int(sys.argv[3])}).name)
"""


def test_two_processes_back_up_to_one_sftp_repository_at_once(sftp_entry):
    import json

    store = SftpStore(build_target("offsite", sftp_entry))
    repo = Repository.init(store, passphrase=PASSPHRASE, **CHEAP)
    backup(repo, rows(100), b"m")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(sftp_entry), PASSPHRASE, str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2)]
    names = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        names.append(out.decode().strip())
    reopened = Repository.open(store, passphrase=PASSPHRASE)
    assert sorted(names) == sorted(s.name for s in reopened.snapshots()[1:])
    for seed, name in zip((1, 2), names):
        rng = random.Random(seed)
        assert b"".join(reopened.read_stream(name, "rows")) == b"".join(rng.randbytes(2000) for _ in range(3000))
    assert check_repository(store, repo=reopened, read_data=True).ok
