"""Per-model overrides declared in a ``dbs.py``: FILE_PATH columns, EXCLUDE and extra file roots, end to end."""

from __future__ import annotations

import hashlib
import json

import pytest

from blog.models import Attachment, Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.backups import payload
from dbs_admin.registry import FieldKind, register, registry

from .conftest import on
from .helpers import build_site, frames_of, media_contents, payload_of, wipe

pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


@pytest.fixture
def declared(tmp_path):
    """As a project's dbs.py would declare: attachments' ``alt_text`` holds a path to a file in an extra
    folder, and posts' ``excerpt`` is not backed up. Put back as it was afterwards."""
    extra = tmp_path / "documents"
    extra.mkdir()
    saved = dict(registry.policies)
    register(Attachment, fields={"alt_text": FieldKind.FILE_PATH}, file_roots=[str(extra)])
    register(Post, fields={"excerpt": FieldKind.EXCLUDE})
    yield extra
    registry.policies.clear()
    registry.policies.update(saved)


def _digests(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_file_path_exclude_and_file_roots_round_trip(declared, media_root, identity, tmp_path, caplog):
    extra = declared
    build_site("sq_a", posts=6, images=3)
    (extra / "manuals").mkdir()
    (extra / "manuals" / "guide.pdf").write_bytes(b"%PDF-1.7 " + bytes(range(256)) * 40)
    (extra / "scan.tif").write_bytes(b"II*\x00" + b"\x7f" * 5000)
    secret = tmp_path / "outside.txt"
    secret.write_text("not in any root")
    with on("sq_a"):
        a, b, c = Attachment.objects.order_by("pk")[:3]
        Attachment.objects.filter(pk=a.pk).update(alt_text="manuals/guide.pdf")  # relative to a root
        Attachment.objects.filter(pk=b.pk).update(alt_text=str(extra / "scan.tif"))  # absolute, inside a root
        Attachment.objects.filter(pk=c.pk).update(alt_text="../outside.txt")  # hostile: must never be read
        Post.objects.update(excerpt="written in the source database")
        alt_texts = dict(Attachment.objects.values_list("pk", "alt_text"))
    extra_files, media_files = _digests(extra), media_contents(media_root)

    result = create_backup(database="sq_a", recipients=[identity.recipient])

    specs = [json.loads(body) for kind, body in frames_of(payload_of(result.path, identity)) if kind == payload.FILE]
    from_extra = sorted(s["name"] for s in specs if s["root"] == str(extra))
    assert from_extra == ["manuals/guide.pdf", "scan.tif"]
    assert all("outside" not in s["name"] for s in specs)
    assert "../outside.txt" in caplog.text  # skipped, and said so

    wipe(extra)
    wipe(media_root)
    restored = restore_backup(result.path, identity=identity, database="sq_b")

    assert _digests(extra) == extra_files and media_contents(media_root) == media_files
    assert secret.read_text() == "not in any root"
    assert restored.files == len(extra_files) + len(media_files)
    with on("sq_b"):
        assert dict(Attachment.objects.values_list("pk", "alt_text")) == alt_texts  # the column itself travels
        assert set(Post.objects.values_list("excerpt", flat=True)) == {""}  # excluded: the model's default
        assert Post.objects.count() == 6


def test_a_file_root_no_longer_declared_is_refused_with_nothing_written(declared, media_root, identity):
    """A backup naming a folder this code does not declare writes nothing there, nor anywhere else."""
    extra = declared
    build_site("sq_a", posts=2, images=1)
    (extra / "note.txt").write_text("kept in an extra root")
    with on("sq_a"):
        Attachment.objects.update(alt_text="note.txt")
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    registry.policies.pop(Attachment)  # the dbs.py declaration is gone from this code
    wipe(extra)
    wipe(media_root)
    with on("sq_b"):
        posts_before = list(Post.objects.values_list("pk", flat=True))

    with pytest.raises(Exception, match="neither MEDIA_ROOT nor a file root"):
        restore_backup(result.path, identity=identity, database="sq_b")

    assert not any(extra.iterdir()) and not any(media_root.iterdir())
    with on("sq_b"):
        assert list(Post.objects.values_list("pk", flat=True)) == posts_before
