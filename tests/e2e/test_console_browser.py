"""The console in headless Chromium with a real Celery worker on Redis: back up, download, validate, restore."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.urls import reverse

from blog.models import Post
from blog.seeding import seed
from dbs_admin.console.restore_views import database_label
from dbs_admin.models import Backup
from dbs_admin.sealed import verify
from tests.console.conftest import redis_broker, start_worker, stop_worker, worker_var  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ROOT / "docs" / "screenshots" / "dashboard.png"
PASSWORD = "a long demo password"
PASSPHRASE = "browser test passphrase 2026"


@pytest.fixture
def worker(redis_broker, worker_var, tmp_path):  # noqa: F811 - imported fixtures
    w = start_worker(redis_broker, tmp_path / "worker.log", var=worker_var)
    yield w
    stop_worker(w)


def log_in(page, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")


def wait_for_job(page, worker=None, timeout_ms: int = 90_000) -> None:
    page.wait_for_selector(".dbs-job[data-state=succeeded], .dbs-job[data-state=failed], "
                           ".dbs-job[data-state=lost], .dbs-job[data-state=cancelled]", timeout=timeout_ms)
    state = page.get_attribute(".dbs-job", "data-state")
    assert state == "succeeded", page.inner_text(".dbs-job") + (worker.log()[-4000:] if worker else "")


def test_back_up_download_validate_and_restore_in_the_browser(page, live_server, django_user_model, worker,
                                                              tmp_path):
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    seed(posts=30, images=3, seed=3)
    titles = sorted(Post.objects.values_list("title", flat=True))
    base = live_server.url
    log_in(page, base)

    # The admin index leads to the dashboard, which leads to Back up now.
    page.click("text=Dashboard")
    page.wait_for_selector("#dbs-dashboard")
    page.click("#dbs-rpo >> text=Back up now")
    page.fill("#id_label", "browser")
    page.fill("#id_passphrase", PASSPHRASE)
    page.fill("#id_passphrase_again", PASSPHRASE + " typo")
    page.click("#dbs-start-backup")
    page.wait_for_selector(".errorlist")  # the form comes back in place with its error
    assert "differ" in page.inner_text("#dbs-backup-form")
    page.fill("#id_passphrase", PASSPHRASE)
    page.fill("#id_passphrase_again", PASSPHRASE)
    page.click("#dbs-start-backup")
    page.wait_for_selector(".dbs-bar")  # swapped in by HTMX, no page load
    assert page.url.endswith(reverse("dbs_admin:backup_now"))
    job_id = page.get_attribute(".dbs-job", "id")
    page.goto(f"{base}/admin/")  # leave, and come back: the same job's bar
    page.goto(f"{base}{reverse('dbs_admin:backup_now')}")
    assert page.get_attribute(".dbs-job", "id") == job_id
    wait_for_job(page, worker)
    assert page.inner_text(".dbs-percent") == "100.0%"
    assert page.get_attribute(".dbs-bar", "aria-valuenow") == "100.0"

    # Download through the signed link, and validate the file with the container's own verify.
    with page.expect_download() as info:
        page.click("#dbs-download")
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert re.fullmatch(r"dbs-\d{8}T\d{12}Z-logical-browser\.dbs", path.name)
    report = verify(path, passphrase=PASSPHRASE)
    assert report.ok and report.intact and report.decrypted

    # Lose data, then restore the downloaded file through the upload form.
    Post.objects.filter(pk__in=list(Post.objects.values_list("pk", flat=True)[:12])).delete()
    page.goto(f"{base}{reverse('dbs_admin:restore')}")
    page.fill("#id_passphrase", PASSPHRASE)
    page.set_input_files("#id_upload", str(path))
    page.click("#dbs-restore-check")
    page.wait_for_selector("#dbs-manifest")
    assert "Migrations match" in page.inner_text("#dbs-migrations")
    assert "blog.Post" in page.inner_text("#dbs-manifest")
    page.fill("#id_confirm", database_label())
    assert page.is_checked("#id_safety_backup")  # what the restore replaces is backed up first, by default
    page.click("#dbs-restore-go")
    wait_for_job(page, worker)
    assert sorted(Post.objects.values_list("title", flat=True)) == titles
    assert Backup.objects.filter(label__startswith="before restore").count() == 1
    page.goto(f"{base}/")
    assert Post.objects.filter(status=Post.Status.PUBLISHED).exists()

    # A second backup after the restore: the bar again, and a second point on the chart.
    page.goto(f"{base}{reverse('dbs_admin:backup_now')}")
    page.click("#dbs-another")  # the finished backup is shown; ask for a fresh form
    page.fill("#id_label", "after restore")
    page.fill("#id_passphrase", PASSPHRASE)
    page.fill("#id_passphrase_again", PASSPHRASE)
    page.click("#dbs-start-backup")
    wait_for_job(page, worker)

    # The dashboard now shows a green light, the jobs and the chart: screenshot for the README.
    page.goto(f"{base}{reverse('admin:dbs_admin_dashboard_changelist')}")
    page.wait_for_selector("#dbs-chart svg")
    assert page.get_attribute("#dbs-rpo .dbs-light", "data-color") == "green"
    page.set_viewport_size({"width": 1100, "height": 820})
    if page.locator("#toggle-nav-sidebar").is_visible():
        page.click("#toggle-nav-sidebar")  # room for the console itself
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-dashboard.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    if os.environ.get("DBS_UPDATE_SCREENSHOTS") == "1":
        # The README's copy is refreshed on request only, so a test run leaves the tree clean.
        page.screenshot(path=str(SCREENSHOT))


def test_wrong_passphrase_in_the_browser_gets_one_clear_message(page, live_server, django_user_model, tmp_path):
    from tests.factories import make_sealed_backup

    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    backup = make_sealed_backup()
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}{reverse('dbs_admin:restore')}?backup={backup.pk}")
    page.fill("#id_passphrase", "not the passphrase at all")
    page.click("#dbs-restore-check")
    page.wait_for_selector("#dbs-restore-error")
    assert page.inner_text("#dbs-restore-error").startswith("Wrong passphrase")
