"""Media on S3 (STORAGES["default"] is django-storages' S3 backend on moto's server): read and restored through it.

No file is under MEDIA_ROOT: a backup must read every image through the field's storage (logical) or the
default storage (native), and a restore must write it back there, byte for byte; a drill must restore it into
its scratch folder, never into the live bucket.
"""

from __future__ import annotations

import hashlib

import pytest

from blog.models import Attachment
from dbs_admin import create_backup, restore_backup
from dbs_admin.drills.runner import run_drill

from .conftest import on
from .helpers import build_site, table_contents

pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


@pytest.fixture
def media_on_s3(s3_storage, s3_server, s3_bucket, media_root):
    s3_storage("default", location="media")
    client = s3_server.client()

    def contents() -> dict[str, str]:
        out = {}
        for item in client.list_objects_v2(Bucket=s3_bucket).get("Contents", []):
            data = client.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read()
            out[item["Key"]] = hashlib.sha256(data).hexdigest()
        return out

    def wipe() -> None:
        for key in contents():
            client.delete_object(Bucket=s3_bucket, Key=key)

    return {"contents": contents, "wipe": wipe, "client": client, "bucket": s3_bucket}


NATIVE_DB = pytest.mark.django_db(transaction=True, databases=["default", "sq_a", "sq_b"])  # the file is swapped


@pytest.mark.parametrize("kind", ["logical", pytest.param("native", marks=NATIVE_DB)])
def test_media_on_s3_round_trips_byte_exact(media_on_s3, media_root, identity, kind):
    build_site("sq_a", posts=10, images=3)
    files = media_on_s3["contents"]()
    assert len(files) == 3 and all(k.startswith("media/uploads/") for k in files)
    assert not any(media_root.iterdir())  # nothing local: the images live in the bucket only
    before = table_contents("sq_a")

    result = create_backup(kind=kind, database="sq_a", recipients=[identity.recipient])
    roots = {entry[0] for entry in result.manifest["file_sha256"]}
    assert roots == {"storage:default"} and len(result.manifest["file_sha256"]) == 3

    first = next(iter(files))
    media_on_s3["client"].put_object(Bucket=media_on_s3["bucket"], Key=first, Body=b"overwritten since")
    media_on_s3["client"].delete_object(Bucket=media_on_s3["bucket"], Key=sorted(files)[-1])
    dry = restore_backup(result.name, target="local", identity=identity, database="sq_b", dry_run=True) \
        if kind == "logical" else None
    if dry is not None:
        assert "files: would write 3 (1 new, 1 different, 1 identical)" in dry.changes
    restored = restore_backup(result.name, target="local", identity=identity, database="sq_b")

    assert restored.files == 3
    assert media_on_s3["contents"]() == files  # every object back, byte for byte
    assert table_contents("sq_b") == before
    assert not any(media_root.iterdir())


def test_a_restore_refused_after_reading_writes_nothing_to_the_storage(media_on_s3, identity):
    build_site("sq_a", posts=4, images=2)
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    media_on_s3["wipe"]()
    with pytest.raises(Exception, match="not found in the backup"):
        restore_backup(result.name, target="local", identity=identity, database="sq_b",
                       objects=["blog.Post:999999"])
    assert media_on_s3["contents"]() == {}


def test_a_drill_restores_s3_media_into_its_scratch_folder_not_the_bucket(media_on_s3, settings, identity):
    settings.ADMINS = []
    build_site("default", posts=6, images=2)
    result = create_backup(database="default", recipients=[identity.recipient])
    live = media_on_s3["contents"]()
    key = next(iter(live))
    media_on_s3["client"].put_object(Bucket=media_on_s3["bucket"], Key=key, Body=b"edited after the backup")
    live = media_on_s3["contents"]()

    report = run_drill(str(result.path), identity=identity, alert=False)

    assert report.passed, [(c.name, c.detail) for c in report.checks.all() if not c.passed] or report.error
    assert "2 files restored, every sha256 matches" in report.checks.get(name="file hashes").detail
    assert media_on_s3["contents"]() == live  # the live bucket was not touched
    with on("default"):
        assert Attachment.objects.count() == 2


def test_hostile_storage_roots_and_names_are_refused(media_on_s3):
    from dbs_admin.backups.errors import UnsafePathError
    from dbs_admin.backups.storage_media import MixedStaging, open_file, storage_for

    for root in ("storage:nope", "storage:blog.Post.title", "storage:blog.Attachment.missing"):
        with pytest.raises(UnsafePathError, match="neither an alias of STORAGES nor a file field"):
            storage_for(root)
    for name in ("../outside.png", "/etc/passwd", "a/../../b"):
        with pytest.raises(UnsafePathError):
            open_file("storage:default", name)
        staging = MixedStaging()
        with pytest.raises(UnsafePathError):
            staging.new_storage_file("storage:default", name)
        staging.cleanup()
