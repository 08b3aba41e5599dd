"""The sealed repository (dbs_admin.sealed.repo): round trips, dedup, keys, healing, concurrency.

Real files in a real folder; damage by XOR flips, zeroed runs and cuts, on
every kind of object (packs, index objects, snapshot records, the keys).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from dbs_admin.sealed import NoKeyError, SealedError, UnrecoverableError, WrongPassphraseError
from dbs_admin.sealed.repo import DirectoryStore, Repository, check_repository, heal_repository, keyless_listing
from dbs_admin.sealed.repo.chunker import cdc_chunks, record_chunks
from dbs_admin.sealed.structure import load_structure

from .conftest import CHEAP, PASSPHRASE


def rows(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(40) + b"post body " * rng.randrange(100, 400) for _ in range(n)]


def backup(repo: Repository, table: list[bytes], media: bytes, **meta):
    snap = repo.new_snapshot()
    snap.set_stream("rows", snap.add_records(table))
    snap.set_stream("media", snap.add_bytes([media]))
    return snap.commit(meta=meta)


def restored(repo: Repository, name: str) -> tuple[bytes, bytes]:
    return b"".join(repo.read_stream(name, "rows")), b"".join(repo.read_stream(name, "media"))


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository.init(DirectoryStore(tmp_path / "repo"), passphrase=PASSPHRASE, **CHEAP)


def test_chunkers_give_back_their_input_and_cut_where_content_says():
    data = random.Random(1).randbytes(3 << 20)
    pieces = [data[i : i + 77_777] for i in range(0, len(data), 77_777)]
    chunks = list(cdc_chunks(pieces))
    assert b"".join(chunks) == data and chunks == list(cdc_chunks([data]))
    # An insertion near the start moves no later cut: all but the first chunks are unchanged.
    shifted = list(cdc_chunks([b"12345" + data]))
    assert len(set(shifted) & set(chunks)) >= len(chunks) - 2
    table = rows(2000)
    cut = list(record_chunks(table))
    assert b"".join(cut) == b"".join(table)
    edited = table[:1000] + [b"changed row"] + table[1001:]
    assert len(set(record_chunks(edited)) - set(cut)) <= 2


def test_snapshots_restore_exactly_and_cost_what_changed(repo):
    table, media = rows(3000), random.Random(2).randbytes(2 << 20)
    first = backup(repo, table, media, n=1)
    table2 = list(table)
    for i in range(0, 3000, 300):  # 10 rows of 3000 edited
        table2[i] = table2[i][:40] + b"edited " * 50
    second = backup(repo, table2, media + b"appended", n=2)
    third = backup(repo, table2, media + b"appended", n=3)
    assert first.added_bytes > 2 << 20
    assert second.added_bytes < first.added_bytes / 10
    assert third.added_bytes < 20_000, "nothing changed must cost only the (padded) snapshot record"
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    assert restored(reopened, first.name) == (b"".join(table), media)
    assert restored(reopened, second.name) == (b"".join(table2), media + b"appended")
    assert [s.meta["n"] for s in reopened.snapshots()] == [1, 2, 3]
    assert keyless_listing(repo.store) == sorted((s.name, s.added_bytes) for s in (first, second, third))
    report = check_repository(repo.store, repo=reopened, read_data=True)
    assert report.ok and report.snapshots == 3 and report.chunks_read > 100


def test_wrong_or_missing_key_is_refused(repo):
    backup(repo, rows(10), b"m")
    with pytest.raises(WrongPassphraseError):
        Repository.open(repo.store, passphrase="not it")
    with pytest.raises(NoKeyError):
        Repository.open(repo.store)


def test_chunk_ids_are_keyed(repo, tmp_path):
    other = Repository.init(DirectoryStore(tmp_path / "other"), passphrase=PASSPHRASE, **CHEAP)
    assert repo.chunk_id(b"same content") != other.chunk_id(b"same content")


def test_an_object_from_another_repository_or_name_is_refused(repo, tmp_path):
    backup(repo, rows(10), b"m")
    root = Path(repo.store.root)
    snaps = sorted((root / "snapshots").iterdir())
    backup(repo, rows(10, seed=5), b"n")
    snaps = sorted((root / "snapshots").iterdir())
    snaps[0].write_bytes(snaps[1].read_bytes())  # a record renamed: its own name is inside, encrypted
    with pytest.raises(SealedError, match="not the snapshot it should be"):
        repo.snapshot(snaps[0].name)


def _object(repo: Repository, kind: str) -> Path:
    root = Path(repo.store.root)
    if kind == "keys":
        return root / "keys"
    return sorted((root / kind).iterdir())[0]


def _copies(path: Path):
    with open(path, "rb") as f:
        st = load_structure(f, path.stat().st_size)
    return st.table.copy_offsets, st.table.data_length


def _damage(path: Path, how: str) -> None:
    buf = bytearray(path.read_bytes())
    rng = random.Random(how)
    (a, b), length = _copies(path)
    if how == "one copy destroyed":
        for i in range(a, a + min(length, 70_000)):
            buf[i] ^= 0x5A
    elif how == "sparse flips in both copies":
        for i in range(0, len(buf), 3000):
            buf[i] ^= rng.randrange(1, 256)
    elif how.startswith("burst"):  # a torn 4 KiB page, wherever it falls
        start = rng.randrange(0, len(buf) - 4096)  # XOR, not zeroes: zeroing padding would change nothing
        for i in range(start, start + 4096):
            buf[i] ^= rng.randrange(1, 256)
    elif how == "truncation":
        del buf[len(buf) - len(buf) // 8 :]
    elif how == "both copies destroyed":
        for start in (a, b):
            for i in range(start, start + min(length, 70_000)):
                buf[i] ^= 0xA5
    path.write_bytes(bytes(buf))


KINDS = ["packs", "index", "snapshots", "keys"]
HEALABLE = ["one copy destroyed", "sparse flips in both copies", "truncation"] + [f"burst {i}" for i in range(4)]


@pytest.mark.parametrize("how", HEALABLE)
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_objects_heal_byte_exact(repo, kind, how):
    table, media = rows(800), random.Random(3).randbytes(300_000)
    snap = backup(repo, table, media)
    path = _object(repo, kind)
    original = path.read_bytes()
    _damage(path, how)
    assert path.read_bytes() != original
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)  # reads through the damage
    assert restored(reopened, snap.name) == (b"".join(table), media)
    found = check_repository(repo.store)
    assert found.ok and found.damaged == [path.relative_to(repo.store.root).as_posix()]
    healed = heal_repository(repo.store)
    assert healed.healed == found.damaged
    assert path.read_bytes() == original, "healing must give back the object byte for byte"
    assert check_repository(repo.store).damaged == []


@pytest.mark.parametrize("kind", ["packs", "index", "snapshots"])
def test_objects_beyond_repair_are_refused_by_name(repo, kind):
    snap = backup(repo, rows(800), random.Random(4).randbytes(300_000))
    path = _object(repo, kind)
    name = path.relative_to(repo.store.root).as_posix()
    _damage(path, "both copies destroyed")
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    with pytest.raises(UnrecoverableError, match=name):
        restored(reopened, snap.name)
    found = check_repository(repo.store)
    assert not found.ok and found.lost == [name]
    with pytest.raises(UnrecoverableError, match=name):
        heal_repository(repo.store)


def test_the_index_can_be_rebuilt_from_the_packs(repo):
    table, media = rows(500), b"media" * 1000
    snap = backup(repo, table, media)
    for index in (Path(repo.store.root) / "index").iterdir():
        index.unlink()
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    with pytest.raises(UnrecoverableError, match="in no index"):
        restored(reopened, snap.name)
    assert reopened.rebuild_index() > 0
    assert restored(reopened, snap.name) == (b"".join(table), media)


WRITER = """
import sys, random
from dbs_admin.sealed.repo import DirectoryStore, Repository
repo = Repository.open(DirectoryStore(sys.argv[1]), passphrase=sys.argv[2])
rng = random.Random(int(sys.argv[3]))
snap = repo.new_snapshot()
snap.set_stream("rows", snap.add_records([rng.randbytes(2000) for _ in range(4000)]))
print(snap.commit(meta={"writer": int(sys.argv[3])}).name)
"""


def test_two_processes_back_up_at_once(repo):
    backup(repo, rows(100), b"m")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(repo.store.root), PASSPHRASE, str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2)]
    names = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        names.append(out.decode().strip())
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    for seed, name in zip((1, 2), names):
        rng = random.Random(seed)
        assert b"".join(reopened.read_stream(name, "rows")) == b"".join(rng.randbytes(2000) for _ in range(4000))
    assert check_repository(repo.store, repo=reopened, read_data=True).ok


def test_format_md_states_the_repository_constants_the_code_uses():
    import ast
    import re

    from dbs_admin.sealed.repo import keyfile, objects, packs, records

    code = {"SLOT_TYPE_REPOSITORY": objects.SLOT_TYPE_REPOSITORY, "REPOSITORY_ID_SIZE": objects.REPOSITORY_ID_SIZE,
            "OBJECT_KEY_LABEL": objects.OBJECT_KEY_LABEL, "CHUNK_ID_LABEL": keyfile.CHUNK_ID_LABEL,
            "SMALL_BLOCK_SIZE": objects.SMALL_BLOCK_SIZE, "SMALL_OBJECT_LIMIT": objects.SMALL_OBJECT_LIMIT,
            "MIN_DATA_LENGTH": objects.MIN_DATA_LENGTH, "PACK_TARGET_SIZE": packs.PACK_TARGET_SIZE,
            "ENTRY_SIZE": records.ENTRY.size, "FLAG_DICT": packs.FLAG_DICT, "DICT_SIZE": packs.DICT_SIZE}
    text = (Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    section = text.split("## R2. Repository constants", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| `(.+?)` \|", section, flags=re.MULTILINE)
    assert {name: ast.literal_eval(value) for name, value in rows} == code


def _series(repo: Repository, n: int) -> dict[str, tuple[bytes, bytes]]:
    """``n`` snapshots of a changing table and media; name -> what each must restore to."""
    table, media = rows(600, seed=9), random.Random(9).randbytes(400_000)
    expected = {}
    rng = random.Random(10)
    for i in range(n):
        for _ in range(30):
            table[rng.randrange(len(table))] = rng.randbytes(40) + b"edit %d " % i * 100
        table.insert(rng.randrange(len(table)), b"inserted %d" % i)
        del table[rng.randrange(len(table))]
        media = media[:100_000] + rng.randbytes(50_000) + media[150_000:]
        snap = backup(repo, table, media)
        expected[snap.name] = (b"".join(table), media)
    return expected


def test_forget_and_collect_keep_every_kept_snapshot_and_free_space(repo):
    from dbs_admin.sealed.repo.prune import collect_garbage, forget

    expected = _series(repo, 6)
    names = sorted(expected)
    before = repo.size()
    for name in names[:3]:
        forget(repo.store, name)
    report = collect_garbage(repo)
    assert report.packs_deleted >= 1 and repo.size() < before
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    assert reopened.snapshot_names() == names[3:]
    for name in names[3:]:
        assert restored(reopened, name) == expected[name]
    assert check_repository(repo.store, repo=reopened, read_data=True).ok


class _Killed(Exception):
    pass


@pytest.mark.parametrize("kill_after", [0, 1, 2, 3, 5, 8])
def test_a_collection_killed_at_any_point_loses_no_kept_snapshot(repo, kill_after, monkeypatch):
    from dbs_admin.sealed.repo.prune import collect_garbage, forget

    expected = _series(repo, 4)
    names = sorted(expected)
    forget(repo.store, names[0])
    forget(repo.store, names[2])
    store = repo.store
    calls = {"n": 0}
    real_delete, real_put = store.delete, store.put_atomic

    def counted(real):
        def wrapper(*args, **kwargs):
            if not args[0].startswith("locks/"):
                calls["n"] += 1
                if calls["n"] > kill_after:
                    raise _Killed
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(store, "delete", counted(real_delete))
    monkeypatch.setattr(store, "put_atomic", counted(real_put))
    try:
        collect_garbage(repo)
    except _Killed:
        pass
    monkeypatch.setattr(store, "delete", real_delete)
    monkeypatch.setattr(store, "put_atomic", real_put)
    for leftover in store.list("locks/"):  # what the killed process would have left: stale after a while
        store.delete(leftover)
    reopened = Repository.open(store, passphrase=PASSPHRASE)
    for name in (names[1], names[3]):
        assert restored(reopened, name) == expected[name]
    assert check_repository(store, repo=reopened, read_data=True).ok
    collect_garbage(reopened)  # and the next collection finishes the job
    for name in (names[1], names[3]):
        assert restored(Repository.open(store, passphrase=PASSPHRASE), name) == expected[name]


def test_a_backup_waits_for_a_collection_and_a_collection_for_backups(repo):
    from dbs_admin.sealed.repo.locks import RepositoryBusyError, lock
    from dbs_admin.sealed.repo.prune import collect_garbage

    with lock(repo.store, exclusive=True), pytest.raises(RepositoryBusyError, match="garbage collection"):
        repo.new_snapshot(lock_wait=0)
    with repo.new_snapshot(), pytest.raises(RepositoryBusyError, match="in use"):
        collect_garbage(repo)
    assert repo.store.list("locks/") == []


def test_cli_checks_and_heals_a_repository_without_django(repo, tmp_path):
    backup(repo, rows(300), random.Random(6).randbytes(200_000))
    root = str(repo.store.root)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dbs_admin.sealed", *args], capture_output=True, text=True,
                              env={"PATH": "", "DBS_PASSPHRASE": PASSPHRASE,
                                   "PYTHONPATH": str(Path(__file__).resolve().parents[2])}, timeout=120)

    assert cli("repo-check", root).returncode == 0
    assert cli("repo-check", root, "--read-data").returncode == 0
    path = _object(repo, "packs")
    _damage(path, "sparse flips in both copies")
    checked = cli("repo-check", root)
    assert checked.returncode == 1 and path.name in checked.stderr
    assert cli("repo-heal", root).returncode == 1
    assert cli("repo-check", root, "--read-data").returncode == 0
    _damage(path, "both copies destroyed")
    lost = cli("repo-heal", root)
    assert lost.returncode == 2 and path.name in lost.stderr


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_a_backup_killed_midway_leaves_a_valid_repository(repo, delay):
    first = backup(repo, rows(200), b"kept")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(repo.store.root), PASSPHRASE, "7"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import time

    time.sleep(delay)
    proc.kill()
    proc.communicate()
    for leftover in repo.store.list("locks/"):  # a killed writer's lock: ignored once stale
        repo.store.delete(leftover)
    reopened = Repository.open(repo.store, passphrase=PASSPHRASE)
    assert restored(reopened, first.name) == (b"".join(rows(200)), b"kept")
    assert check_repository(repo.store, repo=reopened, read_data=True).ok
    from dbs_admin.sealed.repo.prune import collect_garbage

    collect_garbage(reopened)
    assert restored(Repository.open(repo.store, passphrase=PASSPHRASE), first.name)[1] == b"kept"



def test_a_scattered_edit_stores_list_chunks_about_its_own_size(repo):
    """A chunk id list is random bytes: any changed id stores its whole list chunk again. After 100 ids changed
    at random places of 20,000 (a 1% change of a large table), the new list chunks must stay far below the
    ~250 KB that 2 KiB lists cost (100 whole chunks of 64 ids, and the levels above nearly whole; ~125 KB now)."""
    rng = random.Random(21)
    ids = [rng.randbytes(32) for _ in range(20_000)]
    first = repo.new_snapshot()
    first.set_stream("payload", ids)
    first.commit()
    for i in rng.sample(range(len(ids)), 100):
        ids[i] = rng.randbytes(32)
    second = repo.new_snapshot()
    second.set_stream("payload", ids)
    info = second.commit()
    new_list_bytes = sum(entry.raw_length for entry in second.packer.written.values())
    assert new_list_bytes < 160_000, new_list_bytes  # the chunk id key is random: ~115 to 130 KB
    assert Repository.open(repo.store, passphrase=PASSPHRASE).stream_ids(info, "payload") == ids
