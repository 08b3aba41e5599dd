"""Reading a remote backup's manifest by ranges: Restore… step 1 never downloads the backup.

The backup lives on the real loopback sshd; the bytes the SFTP reader fetched are counted where they
cross (``_RemoteReader.fetched_total``), so "fewer than 1% of the file" is measured, not assumed.
"""

from __future__ import annotations

import os

import pytest
from django.test import Client

from blog.models import Attachment, Post
from dbs_admin import create_backup, read_manifest
from dbs_admin.models import Backup
from dbs_admin.sealed import open_sealed
from dbs_admin.sealed.layout import PREFIX_SIZE
from dbs_admin.sealed.structure import load_structure
from dbs_admin.targets.sftp import _RemoteReader

PASSPHRASE = "ranged reads only"
pytestmark = pytest.mark.django_db


@pytest.fixture
def remote_backup(sftp_entry, sftp_dir, tmp_path, settings, media_root):
    """A backup of about 40 MB on the SFTP target 'offsite' (a large media file makes it large)."""
    settings.DBS_ADMIN = {
        **settings.DBS_ADMIN,
        "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "local")}, "offsite": sftp_entry},
        "DEFAULT_TARGET": "local",
        "PRIVATE_ROOT": str(tmp_path / "private"),
        "ARGON2": {"time_cost": 1, "memory_kib": 1024, "parallelism": 1, "allow_weak": True},
    }
    (media_root / "uploads").mkdir()
    (media_root / "uploads" / "big.png").write_bytes(os.urandom(20 * 1024 * 1024))
    Post.objects.create(title="a post", slug="a-post")
    Attachment.objects.create(image="uploads/big.png")
    result = create_backup(target="offsite", passphrase=PASSPHRASE, label="remote")
    path = sftp_dir / result.name  # the server's file, as the sshd sees it (loopback, no chroot)
    assert path.stat().st_size > 40 * 1024 * 1024
    return Backup.objects.get(name=result.name), path


def fetched_during(action) -> tuple[object, int]:
    before = _RemoteReader.fetched_total
    outcome = action()
    return outcome, _RemoteReader.fetched_total - before


def step1(client: Client, backup: Backup):
    return client.post("/dbs/restore/check/", {"backup": backup.pk, "passphrase": PASSPHRASE})


@pytest.fixture
def su_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_the_manifest_of_a_remote_backup_is_read_by_ranges(remote_backup):
    backup, path = remote_backup
    with open_sealed(path, passphrase=PASSPHRASE) as reader:
        whole = dict(reader.manifest)

    manifest, fetched = fetched_during(lambda: read_manifest(backup.name, target="offsite", passphrase=PASSPHRASE))

    assert manifest == whole
    assert 0 < fetched < path.stat().st_size / 100


def test_restore_step_one_shows_a_remote_manifest_after_reading_under_one_percent(remote_backup, su_client):
    backup, path = remote_backup

    response, fetched = fetched_during(lambda: step1(su_client, backup))

    assert response.status_code == 200, response.content.decode()[:500]
    page = response.content.decode()
    assert "blog.Post" in page and "dbs-restore-confirm" in page  # step 2: the manifest, then the confirmation
    assert fetched < path.stat().st_size / 100


def test_a_damaged_first_copy_of_the_manifest_is_healed_from_the_second_without_a_download(remote_backup,
                                                                                          su_client):
    backup, path = remote_backup
    with open(path, "rb") as f:
        structure = load_structure(f, path.stat().st_size)
    first = structure.locator.manifests[0]
    with open(path, "r+b") as f:  # XOR a run of bytes of its payload (a fixed byte could be a no-op)
        f.seek(first + PREFIX_SIZE + 8)
        damaged = bytes(b ^ 0xA5 for b in f.read(64))
        f.seek(first + PREFIX_SIZE + 8)
        f.write(damaged)

    response, fetched = fetched_during(lambda: step1(su_client, backup))

    assert response.status_code == 200 and "blog.Post" in response.content.decode()
    assert fetched < path.stat().st_size / 100


def test_a_truncated_remote_file_is_reported_as_truncated_without_a_download(remote_backup, su_client):
    backup, path = remote_backup
    size = path.stat().st_size
    os.truncate(path, size // 2)

    response, fetched = fetched_during(lambda: step1(su_client, backup))

    assert response.status_code == 400 and "truncated" in response.content.decode()
    assert fetched < size / 100
