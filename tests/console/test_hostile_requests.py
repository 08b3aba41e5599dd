"""Requests a console must survive: ids that are not ids, a broker that is down, an error page with a passphrase.

Every URL that takes an object id answers 404 (or the admin's "doesn't exist" redirect), never 500; Back up
now while the broker is down answers in one sentence and leaves no job or sealed key behind; and no error
page, with DEBUG on or off, shows a passphrase the user typed.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from blog.models import Post
from dbs_admin.models import HandoffSecret, Job
from demo_site.celery import app
from tests.factories import make_sealed_backup

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

NOT_IDS = ["x", "0", "-1", "1.5", "99999999999999999999999999", "%2E%2E%2F%2E%2E%2Fetc", "1%20OR%201%3D1",
           "a" * 300]
PASSPHRASE = "the passphrase nobody may see"


@pytest.fixture
def client_500(superuser) -> Client:
    """A superuser client that gets the 500 response Django would send, instead of the exception."""
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    return client


def id_urls(bad: str) -> list[str]:
    return [
        f"/dbs/jobs/{bad}/", f"/dbs/backups/{bad}/download/",
        f"/admin/dbs_admin/backup/{bad}/change/", f"/admin/dbs_admin/job/{bad}/change/",
        f"/admin/dbs_admin/auditevent/{bad}/change/", f"/admin/dbs_admin/drillreport/{bad}/change/",
        f"/admin/blog/post/{bad}/change/", f"/admin/blog/post/{bad}/history/",
        f"/admin/blog/post/{bad}/history/compare/", f"/admin/blog/post/{bad}/history/restore/initial/",
        f"/admin/blog/post/dbs-history/deleted/{bad}/", f"/admin/blog/post/dbs-history/image/{bad}/{bad}.png",
    ]


@pytest.mark.parametrize("bad", NOT_IDS)
def test_an_id_that_is_not_one_is_a_404_or_the_admins_redirect_never_a_500(bad, client_500):
    make_sealed_backup()
    Post.objects.create(title="a post", slug="a-post")
    answers = {url: client_500.get(url).status_code for url in id_urls(bad)}
    answers[f"/dbs/jobs/{bad}/cancel/"] = client_500.post(f"/dbs/jobs/{bad}/cancel/").status_code
    assert {url: code for url, code in answers.items() if code not in (302, 404)} == {}
    assert client_500.get(f"/dbs/download/{bad}/").status_code in (403, 404)  # a token: forged, or no route


@pytest.mark.parametrize("bad", NOT_IDS)
def test_a_restore_form_for_a_backup_that_is_not_one_still_renders(bad, client_500):
    assert client_500.get("/dbs/restore/", {"backup": bad}).status_code == 200


@pytest.fixture
def broker_down():
    """Celery pointed at a port where nothing listens: what a stopped Redis looks like to the web process."""
    saved = app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_connection_timeout
    app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_connection_timeout = (
        "redis://127.0.0.1:9/0", False, 1)
    app._pool = None
    app.amqp._producer_pool = None
    yield
    app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_connection_timeout = saved
    app._pool = None
    app.amqp._producer_pool = None


def backup_now(client: Client, **extra):
    return client.post("/dbs/backup/", {"kind": "logical", "target": "local", "label": "", "key": "passphrase",
                                        "passphrase": PASSPHRASE, "passphrase_again": PASSPHRASE}, **extra)


def test_back_up_now_while_the_broker_is_down_says_so_and_leaves_nothing(broker_down, su_client):
    response = backup_now(su_client)

    assert response.status_code == 503
    page = response.content.decode()
    assert "cannot be reached, so nothing was queued" in page and PASSPHRASE not in page
    assert Job.objects.count() == 0 and HandoffSecret.objects.count() == 0


def test_back_up_now_while_the_broker_is_down_over_htmx_swaps_in_the_sentence(broker_down, su_client):
    response = backup_now(su_client, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "cannot be reached" in response.content.decode()


@pytest.fixture
def handoff_table_gone():
    """The hand-off table is missing (a failed migration): the error strikes after the passphrase is in hand.

    Renamed away and back rather than dropped: MariaDB's DDL is not rolled back with the test's transaction.
    """
    table = connection.ops.quote_name(HandoffSecret._meta.db_table)
    hidden = connection.ops.quote_name(HandoffSecret._meta.db_table + "_gone")
    with connection.cursor() as c:
        c.execute(f"ALTER TABLE {table} RENAME TO {hidden}")
    yield
    with connection.cursor() as c:
        c.execute(f"ALTER TABLE {hidden} RENAME TO {table}")


@pytest.mark.django_db(transaction=True)  # the rename is undone by the fixture, on every engine
@pytest.mark.parametrize("debug", [True, False])
def test_an_error_page_never_shows_the_passphrase(debug, handoff_table_gone, client_500, settings):
    settings.DEBUG = debug

    response = backup_now(client_500)

    assert response.status_code == 500
    page = response.content.decode()
    assert PASSPHRASE not in page
    if debug:  # the debug page is still useful: it shows the frames, with the secret's variables hidden
        assert "Local vars" in page and "secret" in page and "********************" in page


def test_the_filter_hides_a_secret_under_any_name_and_leaves_the_rest(rf):
    from dbs_admin.console.error_reports import SecretsFilter

    request = rf.post("/dbs/backup/", {"passphrase": PASSPHRASE, "label": "nightly"})
    request.sensitive_post_parameters = ["passphrase"]

    def frame():
        innocent, renamed, inside = "nightly", PASSPHRASE, {"keys": [PASSPHRASE.encode()]}  # noqa: F841
        import sys

        return sys._getframe()

    shown = dict(SecretsFilter().get_traceback_frame_variables(request, frame()))
    assert shown["innocent"] == "nightly"
    assert shown["renamed"] == shown["inside"] == SecretsFilter.cleansed_substitute


def test_a_staff_user_gets_403_not_the_page(client, staff_user):
    client.login(username="staff", password=PASSWORD if staff_user.check_password(PASSWORD) else "staff password")
    assert client.get("/dbs/backup/").status_code == 403
