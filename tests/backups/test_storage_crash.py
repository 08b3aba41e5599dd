"""A backup killed while it uploads to S3 (SIGKILL, a real subprocess) leaves nothing that lists as a backup,
and what it did leave (an incomplete multipart upload) is removed: by the reaper for a lost job, by retention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from dbs_admin.jobs.workspace import remote_entry, remove_partial_files
from dbs_admin.models import Backup
from dbs_admin.targets import get_target
from dbs_admin.targets.naming import backup_file_name
from tests import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3_target(settings, s3_storage, tmp_path):
    s3_storage("backups")
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {"s3": {"kind": "storage", "storage": "backups"}},
                          "PRIVATE_ROOT": str(tmp_path / "private"), "RETENTION": {"*": {"last": 3}}}
    return get_target("s3")


@pytest.mark.django_db(transaction=True)
def test_a_killed_upload_lists_no_backup_and_its_leftovers_are_swept(s3_target, s3_server, s3_bucket, tmp_path,
                                                                    identity):
    from django.db import connection

    if connection.vendor == "postgresql":
        services.require("pg_dump", bool(subprocess.run(["which", "pg_dump"], capture_output=True).stdout),
                         "apt-get install postgresql-client")
    media = tmp_path / "media"
    media.mkdir()
    (media / "big.bin").write_bytes(os.urandom(48 * 1024 * 1024))  # incompressible: a long upload
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.s3_settings", "DATABASE_URL": services.shared_database_url(),
           "DBS_VAR_DIR": str(tmp_path / "var"), "DJANGO_MEDIA_ROOT": str(media),
           "DBS_TEST_S3_ENDPOINT": s3_server.endpoint_url, "DBS_TEST_S3_BUCKET": s3_bucket,
           "DBS_TEST_RECIPIENT": identity.recipient}
    env.pop("DBS_PASSPHRASE", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "dbs_backup", "--kind", "native", "--target",
                             "s3", "--no-input"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = s3_server.client()
    deadline = time.monotonic() + 180
    try:
        while not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.02)
        time.sleep(0.3)  # a few parts on their way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()

    assert s3_target.list() == []
    assert [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])] == []
    assert not Backup.objects.exists()
    assert len(client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]) == 1

    call_command("dbs_prune", "--target", "s3")  # retention sweeps what interrupted uploads left

    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_the_reaper_discards_what_a_lost_jobs_upload_left(s3_target, s3_server, s3_bucket, tmp_path):
    """A lost backup job's ``remote:`` partial entry: its incomplete upload and unpublished object go; a
    published backup of the same target is untouched."""
    from datetime import UTC, datetime

    client = s3_server.client()
    lost, kept = backup_file_name(datetime(2026, 1, 2, tzinfo=UTC), "logical"), "dbs-keep.dbs"
    (tmp_path / "k.dbs").write_bytes(b"a published backup")
    s3_target.put(tmp_path / "k.dbs", kept)
    client.create_multipart_upload(Bucket=s3_bucket, Key=lost)
    client.put_object(Bucket=s3_bucket, Key=lost, Body=b"completed, never verified nor published")

    removed = remove_partial_files([remote_entry("s3", lost), remote_entry("s3", kept)])

    assert removed == [f"s3:{lost}", f"s3:{lost}"]  # the upload aborted, the object removed
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]) == [kept, f"{kept}.sha256"]
