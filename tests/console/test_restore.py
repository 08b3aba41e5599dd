"""Restore… step 1 and 2 without a worker: one clear message per failure, the plan is bound and sealed."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from dbs_admin.conf import dbs_settings
from dbs_admin.console.restore_views import DAMAGED, WRONG_PASSPHRASE, database_label
from dbs_admin.models import HandoffSecret, Job
from tests.factories import PASSPHRASE, make_sealed_backup, target_path

pytestmark = pytest.mark.django_db


def uploads() -> list[Path]:
    folder = Path(dbs_settings.PRIVATE_ROOT) / "uploads"
    return sorted(folder.glob("*")) if folder.exists() else []


@pytest.fixture(autouse=True)
def no_uploads():
    for p in uploads():
        p.unlink()


def step1(client, **data):
    return client.post(reverse("dbs_admin:restore_check"), data)


def test_wrong_passphrase_gets_one_clear_message_and_nothing_is_kept(su_client):
    backup = make_sealed_backup()
    response = step1(su_client, backup=backup.pk, passphrase="wrong passphrase, surely")
    assert response.status_code == 400
    assert response.context["error"] == WRONG_PASSPHRASE
    assert not HandoffSecret.objects.exists()


def test_uploaded_file_with_wrong_passphrase_is_removed(su_client):
    backup = make_sealed_backup()
    data = target_path(backup).read_bytes()
    response = step1(su_client, passphrase="nope nope nope",
                     upload=SimpleUploadedFile("x.dbs", data, "application/octet-stream"))
    assert response.status_code == 400 and response.context["error"] == WRONG_PASSPHRASE
    assert uploads() == []


def test_damaged_beyond_repair_gets_one_clear_message(su_client):
    backup = make_sealed_backup()
    path = target_path(backup)
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 5):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    response = step1(su_client, backup=backup.pk, passphrase=PASSPHRASE)
    assert response.status_code == 400
    error = response.context["error"]
    assert error.startswith(DAMAGED.split("{")[0]) or error.startswith("This is not a dbs_admin backup")


def test_good_upload_shows_the_manifest_and_seals_the_passphrase(su_client):
    backup = make_sealed_backup()
    data = target_path(backup).read_bytes()
    response = step1(su_client, passphrase=PASSPHRASE,
                     upload=SimpleUploadedFile("x.dbs", data, "application/octet-stream"))
    assert response.status_code == 200
    assert ("blog.Post", 1) in response.context["summary"]["counts"]
    (kept,) = uploads()
    assert kept.read_bytes() == data and kept.stat().st_mode & 0o077 == 0
    plan = response.context["form"].initial["plan"]
    assert PASSPHRASE not in plan and PASSPHRASE not in response.content.decode()
    (secret,) = HandoffSecret.objects.all()
    assert PASSPHRASE.encode() not in bytes(secret.ciphertext)
    assert database_label() in response.content.decode()


def test_plan_of_another_user_or_altered_is_refused(su_client, django_user_model):
    backup = make_sealed_backup()
    plan = step1(su_client, backup=backup.pk, passphrase=PASSPHRASE).context["form"].initial["plan"]
    other = django_user_model.objects.create_superuser("other", "o@example.com", "pw other user")
    client = Client()
    client.force_login(other)
    response = client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": database_label()})
    assert response.status_code == 403
    response = su_client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan[:-3] + "abc",
                                                                      "confirm": database_label()})
    assert response.status_code == 400 and "expired or was altered" in response.context["error"]
    assert not Job.objects.exists()


def test_migration_mismatch_is_shown_before_anything_happens(su_client):
    from dbs_admin.console.restore_views import summarize

    summary = summarize({"counts": {"blog.Post": 3}, "files": 2,
                         "migrations": [["blog", "0001_initial"], ["blog", "9999_from_the_future"]]})
    assert summary["migrations_known"] and summary["migrations_match"] is False
    assert "blog.9999_from_the_future" in summary["only_in_backup"]
    assert summary["total_rows"] == 3 and summary["file_count"] == 2
