"""Signed download links: bound to the user, expiring, tamper-proof, streamed from the target, audited."""

from __future__ import annotations

import time

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from dbs_admin.console.downloads import SALT, make_token
from dbs_admin.models import AuditEvent
from tests.factories import make_sealed_backup, target_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup():
    return make_sealed_backup()


def _events(outcome):
    return list(AuditEvent.objects.filter(action="download", outcome=outcome))


def test_owner_downloads_the_exact_file_streamed_from_the_target(backup, superuser, su_client, settings):
    response = su_client.get(reverse("dbs_admin:download_link", args=[backup.pk]))
    assert response.status_code == 302
    response = su_client.get(response["Location"])
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="{backup.name}"'
    assert b"".join(response.streaming_content) == target_path(backup).read_bytes()
    (event,) = _events(AuditEvent.Outcome.OK)
    assert event.user == superuser and event.backup == backup and event.ip == "127.0.0.1"
    assert not str(target_path(backup)).startswith(str(settings.MEDIA_ROOT))


def test_link_of_another_superuser_is_refused_and_audited(backup, superuser, django_user_model):
    other = django_user_model.objects.create_superuser("other", "o@example.com", "another password")
    client = Client()
    client.force_login(other)
    response = client.get(reverse("dbs_admin:download", args=[make_token(backup, superuser)]))
    assert response.status_code == 403
    (event,) = _events(AuditEvent.Outcome.DENIED)
    assert event.username == "other" and event.backup == backup and "issued to user" in event.detail


def test_expired_link_gets_410_and_is_audited(backup, superuser, su_client, settings):
    token = make_token(backup, superuser)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DOWNLOAD_LINK_TTL": 1}
    time.sleep(2.1)
    response = su_client.get(reverse("dbs_admin:download", args=[token]))
    assert response.status_code == 410
    assert b"expired" in response.content
    assert _events(AuditEvent.Outcome.DENIED)[0].detail == "expired link"


@pytest.mark.parametrize("tamper", ["payload", "signature", "salt"])
def test_tampered_link_gets_403_and_is_audited(backup, superuser, su_client, tamper):
    token = make_token(backup, superuser)
    if tamper == "payload":  # point the same signature at another backup id
        forged = signing.TimestampSigner(salt=SALT).sign_object({"b": backup.pk + 1, "u": superuser.pk})
        token = forged.split(":")[0] + token[token.index(":"):]
    elif tamper == "signature":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    else:  # a signature made for another purpose of the site is not a download link
        token = signing.TimestampSigner(salt="something-else").sign_object({"b": backup.pk, "u": superuser.pk})
    response = su_client.get(reverse("dbs_admin:download", args=[token]))
    assert response.status_code == 403
    assert _events(AuditEvent.Outcome.DENIED)[0].detail == "tampered or invalid link"
    assert not _events(AuditEvent.Outcome.OK)


def test_download_streams_from_an_sftp_target_when_no_local_copy(superuser, su_client, settings, tmp_path):
    """Nothing assumes the web process shares a disk with the worker: the bytes come over SFTP."""
    import secrets
    import shutil

    from dbs_admin.models import Backup, BackupCopy
    from dbs_admin.targets import get_target
    from tests import services

    sshd = services.ssh_server()
    folder = sshd.root / f"console-{secrets.token_hex(4)}"
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {**settings.DBS_ADMIN["TARGETS"], "offsite": {
        "kind": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "key_filename": str(sshd.key_path), "known_hosts": str(sshd.known_hosts), "path": str(folder),
        "timeout": 10}}}
    try:
        local = make_sealed_backup()
        data = target_path(local).read_bytes()
        get_target("offsite").put(target_path(local), local.name)
        BackupCopy.objects.filter(backup=local).delete()
        target_path_local = get_target("local").local_path(local.name)
        target_path_local.unlink()
        BackupCopy.objects.create(backup=local, target="offsite", path=local.name)
        response = su_client.get(reverse("dbs_admin:download", args=[make_token(local, superuser)]))
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == data
        assert Backup.objects.get().audit_events.get(outcome=AuditEvent.Outcome.OK).detail == "from target offsite"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
