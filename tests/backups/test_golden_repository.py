"""The frozen golden repository (tests/fixtures/golden/repo-v1, made by make_golden_repository.py) must open,
verify, and restore each of its snapshots exactly, forever: a repository made by an older release is read by
every later one (as restic and borg promise for theirs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from django.apps import apps

from blog.models import Post
from dbs_admin import restore_backup
from dbs_admin.backups.repository import export_snapshot
from dbs_admin.backups.validate import validate_backup
from dbs_admin.sealed import WrongPassphraseError, verify
from dbs_admin.sealed.repo import DirectoryStore, Repository, check_repository
from dbs_admin.sealed.structure import load_structure
from dbs_admin.targets import get_target

from .conftest import on

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
EXPECTED = json.loads((GOLDEN / "repo-v1.json").read_text())
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


def _post_digest(rows) -> str:  # as make_golden_repository.post_digest
    text = json.dumps([[pk, title, slug, body] for pk, title, slug, body in sorted(rows)], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def golden(settings, tmp_path) -> Path:
    """A copy of the golden repository (never the fixture itself: a read may heal) as target "golden"."""
    copy = tmp_path / "repo-v1"
    shutil.copytree(GOLDEN / "repo-v1", copy)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "golden": {"kind": "local", "path": str(copy), "format": "repository"}}}
    return copy


def _restored_matches(snapshot: dict, media_root: Path) -> None:
    with on("sq_b"):
        for label, count in snapshot["counts"].items():
            assert apps.get_model(label)._base_manager.using("sq_b").count() == count, label
        assert _post_digest(Post.objects.using("sq_b").values_list("pk", "title", "slug", "content_md")) == \
            snapshot["posts"]
    for name, digest in snapshot["media"].items():
        assert hashlib.sha256((media_root / name).read_bytes()).hexdigest() == digest, name


def test_the_golden_repository_verifies_and_every_snapshot_restores_exactly(golden, media_root):
    store = DirectoryStore(golden)
    keyless = check_repository(store)
    assert keyless.ok and keyless.damaged == [] and keyless.objects == 7
    repo = Repository.open(store, passphrase=EXPECTED["passphrase"])
    full = check_repository(store, repo=repo, read_data=True)
    assert full.ok and full.snapshots == 2 and full.chunks_read > 0
    assert [s.name for s in get_target("golden").list()] == [s["name"] for s in reversed(EXPECTED["snapshots"])]
    for snapshot in EXPECTED["snapshots"]:
        checked = validate_backup(snapshot["name"], target="golden", passphrase=EXPECTED["passphrase"], decrypt=True)
        assert checked.ok and checked.intact, checked.message
        restore_backup(snapshot["name"], target="golden", database="sq_b", passphrase=EXPECTED["passphrase"],
                       allow_migration_mismatch=True)
        _restored_matches(snapshot, media_root)


def test_a_golden_snapshot_exports_and_a_wrong_key_is_refused(golden, tmp_path):
    first = EXPECTED["snapshots"][0]
    out = tmp_path / "golden.dbs"
    export_snapshot(get_target("golden"), first["name"], out, passphrase=EXPECTED["passphrase"],
                    keys={"passphrase": "export key", "argon2": None, "allow_weak_argon2": True})
    assert verify(out, passphrase="export key").ok
    with pytest.raises(WrongPassphraseError):
        export_snapshot(get_target("golden"), first["name"], tmp_path / "no.dbs", passphrase="not the passphrase")
    assert not (tmp_path / "no.dbs").exists()


def test_a_damaged_golden_pack_still_restores_exactly(golden, media_root):
    pack = max((golden / "packs").iterdir(), key=lambda p: p.stat().st_size)
    buf = bytearray(pack.read_bytes())
    with open(pack, "rb") as f:
        st = load_structure(f, len(buf))
    start, length = st.table.copy_offsets[0], st.table.data_length
    for i in range(start, start + length):  # one whole copy of the data destroyed
        buf[i] ^= 0x5A
    pack.write_bytes(bytes(buf))
    found = check_repository(DirectoryStore(golden))
    assert found.ok and found.damaged == [pack.relative_to(golden).as_posix()]
    snapshot = EXPECTED["snapshots"][-1]
    restore_backup(snapshot["name"], target="golden", database="sq_b", passphrase=EXPECTED["passphrase"],
                   allow_migration_mismatch=True)
    _restored_matches(snapshot, media_root)
