"""Uploaded .dbs files: size limit enforced while streaming, magic checked first, refusals leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import StopFutureHandlers, StopUpload
from django.urls import reverse

from dbs_admin.conf import dbs_settings
from dbs_admin.console.upload_handler import FOREIGN_MESSAGE
from dbs_admin.models import AuditEvent
from dbs_admin.sealed.layout import MAGIC
from tests.factories import PASSPHRASE

pytestmark = pytest.mark.django_db


def uploads() -> list[Path]:
    folder = Path(dbs_settings.PRIVATE_ROOT) / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.fixture(autouse=True)
def empty_uploads():
    for p in uploads():
        p.unlink()


def post(client, content: bytes, name="backup.dbs"):
    return client.post(reverse("dbs_admin:restore_check"), {
        "passphrase": PASSPHRASE, "upload": SimpleUploadedFile(name, content, "application/octet-stream"),
    })


def test_upload_over_the_limit_is_refused_while_streaming(su_client, settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "UPLOAD_MAX_BYTES": 200_000}
    response = post(su_client, MAGIC + b"\0" * 300_000)
    assert response.status_code == 400
    assert "larger than the upload limit of 200,000 bytes" in response.content.decode()
    assert uploads() == []
    assert AuditEvent.objects.get(action="upload").outcome == AuditEvent.Outcome.DENIED


def test_limit_is_checked_on_the_bytes_not_only_the_announced_length(settings, rf):
    """A body whose Content-Length lies small still stops at the limit (the handler counts bytes)."""
    from dbs_admin.console.upload_handler import SealedUploadHandler

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "UPLOAD_MAX_BYTES": 100_000}
    handler = SealedUploadHandler()
    handler.handle_raw_input(None, {}, 10, b"x")
    with pytest.raises(StopFutureHandlers):  # it takes the file for itself
        handler.new_file("upload", "x.dbs", "application/octet-stream", None)

    handler.receive_data_chunk(MAGIC + b"\0" * 60_000, 0)
    with pytest.raises(StopUpload):
        handler.receive_data_chunk(b"\0" * 60_000, 60_008)
    assert "larger than the upload limit" in handler.error
    assert uploads() == []


@pytest.mark.parametrize("content", [
    b"PK\x03\x04" + b"zip" * 1000,              # a zip file
    b"-- PostgreSQL database dump\n" * 50,       # a plain SQL dump
    b"\x89PNG\r\n\x1a\n" + b"\0" * 100,         # same length of magic, another format
    b"\x89DB",                                   # shorter than the magic
])
def test_foreign_file_is_refused_by_its_first_bytes(su_client, content):
    response = post(su_client, content)
    assert response.status_code == 400
    assert FOREIGN_MESSAGE in response.content.decode()
    assert uploads() == []


def test_right_magic_but_not_a_sealed_file_gets_one_clear_message(su_client):
    response = post(su_client, MAGIC + b"garbage that is not a container" * 100)
    assert response.status_code == 400
    text = response.content.decode()
    assert "not a dbs_admin backup" in text or "damaged beyond repair" in text
    assert uploads() == []


def test_abandoned_uploads_are_removed_by_the_reaper_and_those_in_use_kept(settings):
    """A restore form left at step 2, or a transfer that broke off: the large file does not stay for ever."""
    import os
    import time

    from dbs_admin.jobs.reaper import reap_lost_jobs
    from dbs_admin.jobs.uploads import upload_dir
    from dbs_admin.models import Job

    folder = upload_dir()
    hour_ago = time.time() - 3700
    abandoned, broken, fresh, queued = (folder / n for n in ("a.dbs", "b.dbs.part", "c.dbs", "d.dbs"))
    for path in (abandoned, broken, fresh, queued):
        path.write_bytes(MAGIC + b"...")
    for path in (abandoned, broken, queued):
        os.utime(path, (hour_ago, hour_ago))
    Job.objects.create(kind=Job.Kind.RESTORE, params={"upload": str(queued)})  # waiting for a worker

    reap_lost_jobs()

    assert sorted(p.name for p in folder.iterdir()) == ["c.dbs", "d.dbs"]
