"""The Download of a repository snapshot as a background export job, with a real Celery worker on Redis.

The key form queues an export job (the key sealed for the worker: never in the broker, the database or a file
in the clear); the job page shows its progress, then a signed, expiring link for its user only, which serves
the exact file the worker made (checked with the rescue CLI). A wrong key fails the job in one line and leaves
nothing; the file goes when its link expires (the link and the reaper); a non-superuser is refused.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse

from blog.seeding import seed
from dbs_admin.conf import dbs_settings
from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.models import AuditEvent, Job
from dbs_admin.sealed import read_manifest

from .test_repository_console import _back_up, repository  # noqa: F401 - the fixture, used by name
from .test_worker import files_containing, redis_dump, wait_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def _exports() -> list[Path]:
    root = Path(dbs_settings.PRIVATE_ROOT) / "exports"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _queued(response) -> int:
    assert response.status_code == 302, response.content.decode()[-1500:]
    return int(response["Location"].rstrip("/").split("/")[-1])


def _download(client, url: str, out: Path):
    response = client.get(url)
    if response.status_code != 200:
        return response
    with open(out, "wb") as f:
        for piece in response.streaming_content:
            f.write(piece)
    response.close()
    return response


def test_a_snapshot_is_exported_by_a_worker_and_served_through_an_expiring_link(
        su_client, superuser, worker_factory, redis_broker, repository, tmp_path, settings):  # noqa: F811
    seed(posts=25, images=2, seed=5)
    passphrase = "canary-" + secrets.token_hex(12)
    worker = worker_factory(env={"DBS_DEMO_REPOSITORY": "1"})
    snap = _back_up(su_client, passphrase, "repository")
    link = su_client.get(reverse("dbs_admin:download_link", args=[snap.pk]))["Location"]
    form = su_client.get(link)
    assert form.status_code == 200 and b"Export for download" in form.content

    # A wrong key: the job fails with one line, audited as a refused download, and leaves nothing.
    wrong = wait_job(_queued(su_client.post(link, {"passphrase": "not the passphrase"})), states=(Job.State.FAILED,))
    assert "refused the key" in wrong.message and "wrong passphrase" in wrong.message, wrong.message
    assert "\n" not in wrong.message and wrong.partial_files == []
    assert _exports() == [], "a refused export leaves nothing behind"
    assert not (Path(dbs_settings.PRIVATE_ROOT) / "exports" / str(wrong.pk)).exists(), "not even its folder"
    page = su_client.get(reverse("dbs_admin:job", args=[wrong.pk])).content.decode()
    assert "dbs-export-download" not in page and "dbs-export-again" in page

    # The right key: the worker exports, the job page links to the file, the link serves that exact file.
    job = wait_job(_queued(su_client.post(link, {"passphrase": passphrase})), timeout=120)
    assert job.kind == Job.Kind.EXPORT and job.backup_id == snap.pk and job.partial_files == []
    (made,) = _exports()
    assert made.name == snap.name and str(made) == job.params["file"]
    assert made.stat().st_mode & 0o077 == 0 or made.parent.stat().st_mode & 0o077 == 0, "private"
    page = su_client.get(reverse("dbs_admin:job", args=[job.pk]))
    url = page.context["export_url"]
    assert "dbs-export-download" in page.content.decode() and url.startswith("/")
    out = tmp_path / "downloaded.dbs"
    response = _download(su_client, url, out)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{snap.name}"'
    assert int(response["Content-Length"]) == out.stat().st_size == made.stat().st_size
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(made.read_bytes()).digest()
    key_file = tmp_path / "key.txt"
    key_file.write_text(passphrase + "\n")
    verified = subprocess.run([sys.executable, "-m", "dbs_admin.sealed", "verify", "--decrypt", "--passphrase-file",
                               str(key_file), str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert verified.returncode == 0, verified.stderr
    with open(out, "rb") as f:
        assert read_manifest(f, out.stat().st_size, passphrase=passphrase)["counts"] == snap.manifest["counts"]
    key_file.unlink()

    # Superusers only: the same user, no longer a superuser, is refused with his own fresh link.
    superuser.is_superuser = False
    superuser.save(update_fields=["is_superuser"])
    assert su_client.get(url).status_code == 403
    superuser.is_superuser = True
    superuser.save(update_fields=["is_superuser"])

    # A link past its life is refused (410) and audited.
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DOWNLOAD_LINK_TTL": 0}
    assert su_client.get(url).status_code == 410
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "DOWNLOAD_LINK_TTL": 600}
    assert _exports() == [made], "a stale link alone removes nothing while the export is kept"

    # The export's own life ends with its link's: the reaper removes it, the link then says it expired.
    Job.objects.filter(pk=job.pk).update(finished_at=job.finished_at - timedelta(seconds=601))
    reap_lost_jobs()
    assert _exports() == [] and not made.parent.exists()
    page = su_client.get(reverse("dbs_admin:job", args=[job.pk])).content.decode()
    assert "dbs-export-expired" in page and "dbs-export-download" not in page
    gone = su_client.get(url)
    assert gone.status_code == 410 and b"expired" in gone.content

    outcomes = sorted(AuditEvent.objects.filter(action="download").values_list("outcome", flat=True))
    assert outcomes == sorted([AuditEvent.Outcome.DENIED] * 3 + [AuditEvent.Outcome.OK])
    assert AuditEvent.objects.filter(action="export").count() == 2, "each queued export is audited"

    assert passphrase.encode() not in redis_dump(redis_broker)
    assert passphrase not in worker.log()
    assert files_containing(passphrase.encode(), tmp_path) == []


def test_an_export_that_expires_before_its_link_is_used_is_removed_by_the_link(
        su_client, worker_factory, redis_broker, repository, tmp_path):  # noqa: F811
    seed(posts=5, images=1, seed=6)
    passphrase = "canary-" + secrets.token_hex(12)
    worker_factory(env={"DBS_DEMO_REPOSITORY": "1"})
    snap = _back_up(su_client, passphrase, "repository")
    link = su_client.get(reverse("dbs_admin:download_link", args=[snap.pk]))["Location"]
    job = wait_job(_queued(su_client.post(link, {"passphrase": passphrase})), timeout=120)
    url = su_client.get(reverse("dbs_admin:job", args=[job.pk])).context["export_url"]
    assert len(_exports()) == 1
    Job.objects.filter(pk=job.pk).update(finished_at=job.finished_at - timedelta(seconds=601))
    response = su_client.get(url)
    assert response.status_code == 410 and _exports() == [], "refused, and removed on the way"
    denied = AuditEvent.objects.get(action="download", outcome=AuditEvent.Outcome.DENIED)
    assert "expired" in denied.detail


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_sealed_to_recipients_is_exported_with_an_uploaded_identity(eager, su_client, settings, tmp_path):
    """A scheduled snapshot (recipient slots only) is exported with its identity file: the export is sealed to
    that identity; a wrong identity passphrase fails the job in one line, audited, leaving nothing."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from dbs_admin import create_backup
    from dbs_admin.jobs.handed_keys import WRONG_IDENTITY_PASSPHRASE
    from dbs_admin.models import Backup
    from dbs_admin.sealed import Argon2Params, generate_identity, info

    weak = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
    identity = generate_identity(tmp_path / "id.txt", "identity passphrase", argon2=weak, allow_weak=True)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": [identity.recipient],
                          "PRIVATE_ROOT": str(tmp_path / "private"),
                          "TARGETS": {"repo": {"kind": "local", "path": str(tmp_path / "repo"),
                                               "format": "repository"}}}
    seed(posts=6, images=1, seed=8)
    snap = Backup.objects.get(pk=create_backup(target="repo").backup_id)  # sealed to the recipient alone
    link = su_client.get(reverse("dbs_admin:download_link", args=[snap.pk]))["Location"]

    def export(passphrase: str) -> Job:
        upload = SimpleUploadedFile("id.txt", (tmp_path / "id.txt").read_bytes(), "text/plain")
        return Job.objects.get(pk=_queued(su_client.post(link, {"passphrase": passphrase, "identity": upload})))

    refused = export("not it")
    assert refused.state == Job.State.FAILED and refused.message == WRONG_IDENTITY_PASSPHRASE
    assert _exports() == [] and AuditEvent.objects.get(action="download").outcome == AuditEvent.Outcome.DENIED
    done = export("identity passphrase")
    assert done.state == Job.State.SUCCEEDED, done.message
    out = tmp_path / "out.dbs"
    response = _download(su_client, su_client.get(reverse("dbs_admin:job", args=[done.pk])).context["export_url"],
                         out)
    assert response.status_code == 200
    assert [s["type"] for s in info(out)["key_slots"]] == ["recipient"], "sealed to the identity, no passphrase"
    with open(out, "rb") as f:
        assert read_manifest(f, out.stat().st_size, identity=identity)["counts"] == snap.manifest["counts"]
