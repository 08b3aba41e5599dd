"""Repository snapshots in the console, with a real Celery worker on Redis: Back up now (alone and with a copy
on a file target), the Backups list and page (bytes added, repository total), Validate, Check the contents,
Restore…, Download (an export job with the key given, then its file through the job page's link), a drill, and the
dashboard's chart. No passphrase anywhere in the clear.
"""

from __future__ import annotations

import secrets

import pytest
from django.urls import reverse

from blog.models import Post
from blog.seeding import seed
from dbs_admin.console.restore_views import database_label
from dbs_admin.models import AuditEvent, Backup, Job
from dbs_admin.sealed import read_manifest, verify
from dbs_admin.targets import get_target

from .test_worker import files_containing, redis_dump, wait_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture
def repository(settings, worker_var):
    """The demo settings' repository target (DBS_DEMO_REPOSITORY=1), here and in the worker."""
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "repository": {"kind": "local", "path": str(worker_var / "dbs_repository"),
                                                        "format": "repository"}}}
    return worker_var / "dbs_repository"


def _back_up(client, passphrase: str, target: str, copies=()) -> Backup:
    before = set(Job.objects.values_list("pk", flat=True))
    response = client.post(reverse("dbs_admin:backup_now"), {
        "kind": "logical", "target": target, "copies": list(copies), "label": "", "key": "passphrase",
        "passphrase": passphrase, "passphrase_again": passphrase})
    assert response.status_code == 302, response.content.decode()[-1500:]
    (pk,) = set(Job.objects.values_list("pk", flat=True)) - before
    job = wait_job(pk, timeout=120)
    return Backup.objects.get(pk=job.backup_id)


def test_snapshots_through_the_console_with_a_real_worker(su_client, worker_factory, redis_broker, repository,
                                                          tmp_path):
    seed(posts=25, images=2, seed=3)
    passphrase = "canary-" + secrets.token_hex(12)
    worker = worker_factory(env={"DBS_DEMO_REPOSITORY": "1"})

    mixed = _back_up(su_client, passphrase, "repository", copies=["local"])
    assert sorted(c.target for c in mixed.copies.all()) == ["local", "repository"]
    Post.objects.filter(pk=Post.objects.order_by("pk").first().pk).update(title="edited before the snapshot")
    expected = sorted(Post.objects.values_list("title", flat=True))
    snap = _back_up(su_client, passphrase, "repository")
    assert [c.target for c in snap.copies.all()] == ["repository"] and not snap.sha256
    figures = snap.manifest["repositories"]["repository"]
    assert snap.size == figures["added"] < mixed.manifest["repositories"]["repository"]["added"]
    assert figures["total"] == get_target("repository").total_size()

    # The list and the page say what a snapshot costs, not a file size it does not have.
    listing = su_client.get(reverse("admin:dbs_admin_backup_changelist")).content.decode()
    assert "snapshot in repository repository" in listing and "dbs-snapshot-size" in listing
    page = su_client.get(reverse("admin:dbs_admin_backup_change", args=[snap.pk])).content.decode()
    assert "+" in page and "in repository (repository" in page
    chart = su_client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    assert "repository (repository size; bars: added)" in chart and "dbs-chart-added" in chart

    # Validate (keyless), then Check the contents (every chunk decrypted), on the worker.
    response = su_client.post(reverse("dbs_admin:backup_validate", args=[snap.pk]))
    job = wait_job(int(response["Location"].rstrip("/").split("/")[-1]))
    assert "objects checked" in job.message
    response = su_client.post(reverse("dbs_admin:restore_check"), {"backup": snap.pk, "passphrase": passphrase,
                                                                   "action": "validate"})
    job = wait_job(int(response["Location"].rstrip("/").split("/")[-1]))
    assert "every chunk decrypted and checked" in job.message

    # Restore… from the snapshot, after breaking the data.
    Post.objects.all().delete()
    step1 = su_client.post(reverse("dbs_admin:restore_check"), {"backup": snap.pk, "passphrase": passphrase})
    assert step1.status_code == 200 and "blog.Post" in step1.content.decode()
    plan = step1.context["form"].initial["plan"]
    su_client.post(reverse("dbs_admin:restore_confirm"), {"plan": plan, "confirm": database_label(),
                                                          "safety_backup": ""})
    wait_job(Job.objects.filter(kind=Job.Kind.RESTORE).latest("pk").pk, timeout=120)
    assert sorted(Post.objects.values_list("title", flat=True)) == expected

    # Download: the link leads to the key form, which queues an export job; its page links to the file
    # (the failures, expiry and access of these links: test_export_jobs.py).
    link = su_client.get(reverse("dbs_admin:download_link", args=[snap.pk]))["Location"]
    form = su_client.get(link)
    assert form.status_code == 200 and b"Export for download" in form.content
    response = su_client.post(link, {"passphrase": passphrase})
    assert response.status_code == 302
    export = wait_job(int(response["Location"].rstrip("/").split("/")[-1]), timeout=120)
    assert export.kind == Job.Kind.EXPORT
    response = su_client.get(su_client.get(reverse("dbs_admin:job", args=[export.pk])).context["export_url"])
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="{snap.name}"'
    out = tmp_path / "downloaded.dbs"
    with open(out, "wb") as f:
        for piece in response.streaming_content:
            f.write(piece)
    response.close()
    assert int(response["Content-Length"]) == out.stat().st_size
    assert verify(out, passphrase=passphrase).ok
    with open(out, "rb") as f:
        assert read_manifest(f, out.stat().st_size, passphrase=passphrase)["counts"] == snap.manifest["counts"]
    assert list(AuditEvent.objects.filter(action="download").values_list("outcome", flat=True)) == [
        AuditEvent.Outcome.OK]

    # A drill of the repository target drills its newest snapshot (exported with the key, then as a file).
    response = su_client.post(reverse("admin:dbs_admin_drillreport_run"),
                              {"target": "repository", "passphrase": passphrase})
    assert response.status_code == 302, response.content.decode()[-1500:]
    drill_job = wait_job(Job.objects.filter(kind=Job.Kind.DRILL).latest("pk").pk, timeout=180)
    assert f"of {snap.name} passed" in drill_job.message, drill_job.message

    assert passphrase.encode() not in redis_dump(redis_broker)
    assert passphrase not in worker.log()
    assert files_containing(passphrase.encode(), tmp_path) == []
