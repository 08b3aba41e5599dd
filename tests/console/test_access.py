"""Every console URL: anonymous → login, staff without superuser → 403, superuser → 200; CSRF on every POST."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from dbs_admin.models import AuditEvent, Job
from tests.factories import make_sealed_backup

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects(superuser):
    backup = make_sealed_backup()
    job = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.SUCCEEDED, backup=backup, created_by=superuser)
    event = AuditEvent.objects.create(action="download", username="root")
    return {"backup": backup, "job": job, "event": event}


def get_urls(o) -> list[str]:
    b, j, e = o["backup"].pk, o["job"].pk, o["event"].pk
    return [
        reverse("admin:app_list", args=["dbs_admin"]),
        reverse("admin:dbs_admin_dashboard_changelist"),
        reverse("admin:dbs_admin_backup_changelist"),
        reverse("admin:dbs_admin_backup_change", args=[b]),
        reverse("admin:dbs_admin_job_changelist"),
        reverse("admin:dbs_admin_job_change", args=[j]),
        reverse("admin:dbs_admin_auditevent_changelist"),
        reverse("admin:dbs_admin_auditevent_change", args=[e]),
        reverse("dbs_admin:backup_now"),
        reverse("dbs_admin:job", args=[j]),
        reverse("dbs_admin:restore"),
        reverse("dbs_admin:schedules"),
        reverse("dbs_admin:download_link", args=[b]),
    ]


def post_urls(o) -> list[str]:
    return [
        reverse("dbs_admin:backup_now"),
        reverse("dbs_admin:job_cancel", args=[o["job"].pk]),
        reverse("dbs_admin:backup_validate", args=[o["backup"].pk]),
        reverse("dbs_admin:restore_check"),
        reverse("dbs_admin:restore_confirm"),
        reverse("dbs_admin:schedules"),
        reverse("admin:dbs_admin_backup_changelist"),
    ]


def test_every_url_listed_is_a_console_url(objects):
    """The matrix covers every route of dbs_admin.urls (a new view cannot escape the access tests)."""
    from dbs_admin.console import urls

    names = {p.name for p in urls.urlpatterns if p.callback.__module__.startswith("dbs_admin.console")}
    covered = {"backup_now", "job", "job_cancel", "backup_validate", "restore", "restore_check", "restore_confirm",
               "schedules", "download_link", "download",
               "status"}  # a token or a superuser: tests/drills/test_health.py::test_status_view_access_rules
    assert names == covered


def test_anonymous_is_sent_to_login(objects):
    client = Client()
    for url in get_urls(objects) + [reverse("dbs_admin:download", args=["x:y:z"])]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    for url in post_urls(objects):
        response = client.post(url)
        assert response.status_code == 302 and reverse("admin:login") in response["Location"], url


def test_staff_without_superuser_gets_403(objects, staff_client):
    app_index, *urls = get_urls(objects)
    for url in urls + [reverse("dbs_admin:download", args=["x:y:z"])]:
        assert staff_client.get(url).status_code == 403, url
    for url in urls[:-1] + [reverse("admin:dbs_admin_drillreport_changelist"),
                            reverse("admin:dbs_admin_drillreport_run")]:
        page = staff_client.get(url).content.decode()  # the admin's look, and why: not a bare "403 Forbidden"
        assert 'id="dbs-forbidden"' in page and "superusers only" in page and "password hashes" in page, url
        assert 'id="site-name"' in page, url
    assert staff_client.get(app_index).status_code == 404  # Django's admin hides apps a user may not see
    for url in post_urls(objects):
        assert staff_client.post(url).status_code == 403, url
    assert staff_client.get(reverse("admin:index")).status_code == 200
    assert b"Backups" not in staff_client.get(reverse("admin:index")).content


def test_superuser_gets_every_page(objects, su_client):
    for url in get_urls(objects):
        response = su_client.get(url, follow=True)
        assert response.status_code == 200, url
    # The download button followed to the end streams the file.
    response = su_client.get(reverse("dbs_admin:download_link", args=[objects["backup"].pk]), follow=True)
    assert response.streaming and b"".join(response.streaming_content)[:4] == b"\x89DBS"


def test_csrf_is_enforced_on_every_post(objects, superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    for url in post_urls(objects):
        response = client.post(url, {"action": "validate", "_selected_action": [objects["backup"].pk]})
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url
    assert not Job.objects.exclude(pk=objects["job"].pk).exists()  # nothing was queued
    # The same POST with the token goes through (the check is not simply "always 403").
    client.get(reverse("dbs_admin:schedules"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("dbs_admin:job_cancel", args=[objects["job"].pk]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_htmx_posts_carry_the_csrf_header(su_client):
    page = su_client.get(reverse("dbs_admin:backup_now")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in page
    assert "htmx" in page and "<script" in page
