"""The admin in a real browser: headless Debian Chromium driven by Playwright."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_superuser_logs_in_and_sees_backups_section(page, live_server, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "a long demo password")
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "a long demo password")
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    assert page.locator("caption a", has_text="Backups").count() == 1
    page.click("text=Dashboard")
    page.wait_for_selector("#dbs-dashboard")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-backups-section.png"))
