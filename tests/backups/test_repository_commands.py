"""The commands on repository snapshots: dbs_export, dbs_prune --gc, dbs_validate, and the rescue CLI's
repo-list/repo-export (no Django).

Real SQLite databases and media, real repositories in folders, damage by XOR on the objects' own bytes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from blog.models import Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.sealed import verify
from dbs_admin.sealed.structure import load_structure
from dbs_admin.targets import get_target

from .conftest import on
from .helpers import build_site, media_contents, table_contents, wipe

PASSPHRASE = "tr0ub4dor & 3 horses"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


@pytest.fixture
def repo_target(settings, tmp_path, monkeypatch):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "repo": {"kind": "local", "path": str(tmp_path / "repo"),
                                                  "format": "repository"}}}
    monkeypatch.delenv("DBS_PASSPHRASE", raising=False)
    return tmp_path / "repo"


@pytest.fixture
def key_file(tmp_path) -> str:
    path = tmp_path / "key.txt"
    path.write_text(PASSPHRASE + "\n")
    return str(path)


def _two_snapshots():
    build_site("sq_a", posts=30, images=2)
    first = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    state_1 = table_contents("sq_a")
    with on("sq_a"):
        Post.objects.filter(pk=Post.objects.order_by("pk").first().pk).update(title="edited for the second")
    second = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
    return (first.name, state_1), (second.name, table_contents("sq_a"))


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    except SystemExit as exc:
        return int(exc.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def _damage(path: Path, *, both: bool) -> None:
    """XOR the first 70 KB of the data of one copy (healable) or of both copies (lost)."""
    buf = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        st = load_structure(f, len(buf))
    (a, b), length = st.table.copy_offsets, st.table.data_length
    for start in (a, b) if both else (a,):
        for i in range(start, start + min(length, 70_000)):
            buf[i] ^= 0xA5 if both else 0x5A  # not the same mask twice: that would undo the first damage
    path.write_bytes(bytes(buf))


def test_export_makes_a_standalone_file_that_restores_exactly(media_root, repo_target, tmp_path, key_file):
    (first, state_1), (second, state_2) = _two_snapshots()
    files = media_contents(media_root)
    out = tmp_path / "first.dbs"
    code, stdout, _ = _run("dbs_export", "--target", "repo", first, str(out), "--passphrase-file", key_file,
                           "--no-input")
    assert code == 0 and "verified" in stdout and out.is_file()
    assert verify(out, passphrase=PASSPHRASE).ok
    latest = tmp_path / "latest.dbs"
    assert _run("dbs_export", "--target", "repo", "--latest", str(latest), "--passphrase-file", key_file,
                "--noinput")[0] == 0
    wipe(media_root)
    restore_backup(out, database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_1 and media_contents(media_root) == files
    restore_backup(latest, database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_2


def test_export_refuses_a_wrong_key_an_unknown_snapshot_and_an_existing_output(media_root, repo_target, tmp_path,
                                                                               key_file):
    (first, _), _ = _two_snapshots()
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    out = tmp_path / "out.dbs"
    code, _, message = _run("dbs_export", "--target", "repo", first, str(out), "--passphrase-file", str(wrong),
                            "--no-input")
    assert code == 3 and "passphrase" in message.lower() and "\n" not in message
    code, _, message = _run("dbs_export", "--target", "repo", "dbs-20000101T000000000000Z-logical.dbs", str(out),
                            "--passphrase-file", key_file, "--no-input")
    assert code != 0 and "no snapshot named" in message
    code, _, message = _run("dbs_export", "--target", "repo", first, str(out), "--no-input")
    assert code == 3 and "--passphrase-file" in message
    assert not out.exists() and list(tmp_path.glob("out.dbs*")) == [], "nothing half-written"
    out.write_bytes(b"precious")
    code, _, message = _run("dbs_export", "--target", "repo", first, str(out), "--passphrase-file", key_file,
                            "--no-input")
    assert code != 0 and "already exists" in message and out.read_bytes() == b"precious"
    code, _, message = _run("dbs_export", "--target", "local", first, str(tmp_path / "x.dbs"),
                            "--passphrase-file", key_file, "--no-input")
    assert code != 0 and "not a repository" in message


def test_prune_gc_collects_alone_and_keeps_every_kept_snapshot(media_root, repo_target, key_file):
    build_site("sq_a", posts=40, images=2)
    states = []
    for i in range(3):
        with on("sq_a"):
            Post.objects.filter(pk__in=Post.objects.order_by("pk").values("pk")[: 30]).update(title=f"round {i}")
        snap = create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")
        states.append((snap.name, table_contents("sq_a")))
    target = get_target("repo")
    code, _, message = _run("dbs_prune", "--gc", "--target", "repo", "--no-input")
    assert code == 3, message  # the collection reads the kept snapshots' chunk lists: it needs the key
    from dbs_admin.backups.retention import prune

    prune("repo", policy={"last": 1})  # forgets, keyless: the space stays until collected
    before = target.total_size()
    assert [s.name for s in target.list()] == [states[-1][0]]
    code, stdout, _ = _run("dbs_prune", "--gc", "--target", "repo", "--passphrase-file", key_file, "--no-input")
    assert code == 0 and "collected" in stdout
    assert target.total_size() < before
    assert [s.name for s in target.list()] == [states[-1][0]], "a collection applies no retention"
    restore_backup(states[-1][0], target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == states[-1][1]
    code, _, message = _run("dbs_prune", "--gc", "--target", "local", "--passphrase-file", key_file)
    assert code != 0 and "not a repository" in message


def test_validate_a_snapshot_without_and_with_the_key(media_root, repo_target, key_file, tmp_path):
    (first, _), (second, _) = _two_snapshots()
    code, stdout, _ = _run("dbs_validate", "--target", "repo", second, "--no-input")
    assert code == 0 and stdout.startswith("OK") and "objects checked" in stdout
    code, stdout, _ = _run("dbs_validate", "--target", "repo", second, "--passphrase-file", key_file, "--no-input")
    assert code == 0 and "every chunk decrypted and checked" in stdout and " rows, " in stdout
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    assert _run("dbs_validate", "--target", "repo", second, "--passphrase-file", str(wrong), "--no-input")[0] == 3
    code, _, message = _run("dbs_validate", "--target", "repo", "dbs-20000101T000000000000Z-logical.dbs",
                            "--no-input")
    assert code != 0 and "no snapshot named" in message

    pack = max((repo_target / "packs").iterdir(), key=lambda p: p.stat().st_size)
    _damage(pack, both=False)
    code, stdout, _ = _run("dbs_validate", "--target", "repo", second, "--no-input")
    assert code == 1 and pack.name in stdout and "repo-heal" in stdout
    code, stdout, _ = _run("dbs_validate", "--target", "repo", second, "--passphrase-file", key_file, "--no-input")
    assert code == 1 and "every chunk decrypted" in stdout
    _damage(pack, both=True)
    code, _, message = _run("dbs_validate", "--target", "repo", second, "--no-input")
    assert code == 2 and pack.name in message
    code, _, message = _run("dbs_validate", "--target", "repo", second, "--passphrase-file", key_file, "--no-input")
    assert code == 2 and pack.name in message


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbs_admin.sealed", *args], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), "DBS_PASSPHRASE": PASSPHRASE,
                               "PYTHONPATH": str(ROOT)}, timeout=300)


def test_the_rescue_cli_lists_and_exports_a_snapshot_without_django(media_root, repo_target, tmp_path):
    (first, state_1), (second, _) = _two_snapshots()
    listed = _cli("repo-list", str(repo_target))
    assert listed.returncode == 0 and listed.stdout.index(first) < listed.stdout.index(second)
    out = tmp_path / "rescued.dbs"
    done = _cli("repo-export", str(repo_target), first, str(out))
    assert done.returncode == 0, done.stderr
    restore_backup(out, database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == state_1
    again = _cli("repo-export", str(repo_target), first, str(out))
    assert again.returncode == 64 and "already exists" in again.stderr
    wrong = subprocess.run([sys.executable, "-m", "dbs_admin.sealed", "repo-export", str(repo_target), first,
                            str(tmp_path / "w.dbs")], capture_output=True, text=True, timeout=300,
                           env={"PATH": "", "DBS_PASSPHRASE": "wrong", "PYTHONPATH": str(ROOT)})
    assert wrong.returncode == 3 and not (tmp_path / "w.dbs").exists()
    unknown = _cli("repo-export", str(repo_target), "no-such-snapshot", str(tmp_path / "u.dbs"))
    assert unknown.returncode == 2, unknown.stderr  # a refusal, like an unrecoverable file; 64 is for bad usage
    assert unknown.stderr.strip().splitlines() == ["error: the repository holds no snapshot named 'no-such-snapshot'"]
    assert not (tmp_path / "u.dbs").exists()


def test_one_capture_goes_to_a_repository_and_a_file_target_each_recorded(media_root, repo_target, key_file):
    from dbs_admin.models import Backup

    build_site("sq_a", posts=25, images=2)
    expected, files = table_contents("sq_a"), media_contents(media_root)
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, target=["repo", "local"])
    assert sorted(result.targets) == ["local", "repo"] and result.failed == {}
    backup = Backup.objects.get(pk=result.backup_id)
    assert sorted(c.target for c in backup.copies.all()) == ["local", "repo"]
    figures = backup.manifest["repositories"]["repo"]
    assert figures["added"] > 0 and figures["total"] == get_target("repo").total_size()
    assert backup.sha256 and backup.size == get_target("local").list()[0].size, "the row describes the file"
    assert [s.name for s in get_target("repo").list()] == [result.name]
    wipe(media_root)
    restore_backup(result.name, target="repo", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == expected and media_contents(media_root) == files
    restore_backup(result.name, target="local", database="sq_b", passphrase=PASSPHRASE)
    assert table_contents("sq_b") == expected
    # The snapshot deduplicates against the repository as usual: a second mixed backup adds little.
    again = create_backup(database="sq_a", passphrase=PASSPHRASE, target=["local", "repo"])
    assert Backup.objects.get(pk=again.backup_id).manifest["repositories"]["repo"]["added"] < figures["added"] / 4


def test_retention_leaves_the_row_of_a_mixed_backup_describing_the_copies_that_remain(media_root, repo_target):
    """A capture teed to a file and a snapshot: once retention deletes the file, the row says what the snapshot
    added (not the file's size); once it deletes the snapshot, the row forgets the repository's figures."""
    from dbs_admin.backups.retention import prune
    from dbs_admin.console.backup_detail import size_words
    from dbs_admin.models import Backup

    build_site("sq_a", posts=25, images=2)
    made = []
    for n in range(3):
        with on("sq_a"):
            Post.objects.filter(pk=Post.objects.order_by("pk").first().pk).update(title=f"edit {n}")
        made.append(Backup.objects.get(pk=create_backup(database="sq_a", passphrase=PASSPHRASE,
                                                        target=["repo", "local"]).backup_id))
    first, second, third = made
    file_size = first.size
    assert first.sha256 and file_size == {f.name: f.size for f in get_target("local").list()}[first.name]

    plan = prune("local", policy={"last": 2})
    assert plan.delete == (first.name,)
    first.refresh_from_db()
    added = first.manifest["repositories"]["repo"]["added"]
    assert [c.target for c in first.copies.all()] == ["repo"]
    assert first.size == added != file_size and first.sha256 == "", "the row is the snapshot's now"
    assert size_words(first).startswith("+") and "repo" in size_words(first)

    plan = prune("repo", policy={"last": 1})
    assert set(plan.delete) == {first.name, second.name}
    assert not Backup.objects.filter(pk=first.pk).exists(), "its last copy went"
    second_file = second.size
    second.refresh_from_db()
    assert [c.target for c in second.copies.all()] == ["local"] and "repositories" not in second.manifest
    assert second.size == second_file and second.sha256, "a file alone: the row is the file's, as before"
    assert "repo" not in size_words(second)
    third.refresh_from_db()
    assert third.sha256 and "repo" in third.manifest["repositories"], "a kept backup is untouched"


def test_a_repository_that_fails_fails_its_copy_alone(media_root, repo_target, monkeypatch):
    from dbs_admin.models import Backup, BackupCopy

    build_site("sq_a", posts=10, images=1)
    create_backup(database="sq_a", passphrase=PASSPHRASE, target="repo")  # the repository's key: PASSPHRASE
    result = create_backup(database="sq_a", passphrase="another passphrase", target=["local", "repo"])
    assert result.targets == ["local"] and "repo" in result.failed and "passphrase" in result.failed["repo"]
    failed = Backup.objects.get(pk=result.backup_id).copies.get(target="repo")
    assert failed.state == BackupCopy.State.FAILED
    assert len(get_target("repo").list()) == 1, "no snapshot was committed"
    restore_backup(result.name, target="local", database="sq_b", passphrase="another passphrase")
    monkeypatch.setenv("DBS_PASSPHRASE", PASSPHRASE)
    code, _, message = _run("dbs_backup", "--database", "sq_a", "--target", "repo", "--target", "local",
                            "--no-input", "--verbosity", "0")
    assert code == 0, message



def test_an_export_that_meets_a_lost_pack_writes_nothing(media_root, repo_target, tmp_path, key_file):
    (first, _), _ = _two_snapshots()
    pack = max((repo_target / "packs").iterdir(), key=lambda p: p.stat().st_size)
    _damage(pack, both=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, message = _run("dbs_export", "--target", "repo", first, str(out_dir / "x.dbs"), "--passphrase-file",
                            key_file, "--no-input")
    assert code != 0 and pack.name in message and "\n" not in message
    assert list(out_dir.iterdir()) == [], "no output and no temporary file left"


def test_a_sealed_file_that_fails_after_the_snapshot_leaves_no_snapshot(media_root, repo_target, monkeypatch):
    from dbs_admin.backups import create
    from dbs_admin.models import Backup

    build_site("sq_a", posts=10, images=1)
    real = create.seal

    def seal_then_fail(pieces, dest, **options):
        real(pieces, dest, **options)  # the capture went through, so the snapshot was committed meanwhile
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(create, "seal", seal_then_fail)
    with pytest.raises(Exception, match="space"):
        create_backup(database="sq_a", passphrase=PASSPHRASE, target=["repo", "local"])
    assert get_target("repo").list() == [] and get_target("local").list() == []
    assert not Backup.objects.exists()
