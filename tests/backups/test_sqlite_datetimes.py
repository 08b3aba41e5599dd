"""SQLite's stored datetime text goes into a logical backup without the ORM's parse-and-format round trip,
and the payload is the same byte for byte as through the converter, whatever shape a value is stored in."""

from __future__ import annotations

import io

import pytest
from django.db import connection

from blog.models import Post
from dbs_admin.backups import logical_capture, payload
from dbs_admin.backups.progress import Reporter

from .helpers import build_site

pytestmark = pytest.mark.django_db(transaction=True)


def rows_of(alias: str = "default") -> list[tuple[bytes, bytes]]:
    with logical_capture.snapshot(alias):
        data = b"".join(logical_capture.stream(alias, head={}, reporter=Reporter(None, None)))
    return [(kind, body) for kind, body in payload.read_frames(io.BytesIO(data))
            if kind in (payload.MODEL, payload.ROWS)]


def test_stored_text_and_the_converter_give_the_same_payload(monkeypatch, media_root):
    if connection.vendor != "sqlite":  # the suite's PostgreSQL and MariaDB runs: the converter's path only
        assert logical_capture.sqlite_datetime_encoders(Post, "default") == {}
        return
    build_site("default", posts=12, images=0)
    first, second, third = Post.objects.order_by("pk").values_list("pk", flat=True)[:3]
    with connection.cursor() as cursor:  # shapes Django reads but never writes itself
        cursor.execute("UPDATE blog_post SET created_at = %s WHERE id = %s", ["2026-01-02T03:04:05", first])
        cursor.execute("UPDATE blog_post SET created_at = %s WHERE id = %s", ["2026-01-02 03:04:05.5", second])
        cursor.execute("UPDATE blog_post SET created_at = %s WHERE id = %s", ["2026-01-02 03:04:05.000001", third])
    assert set(logical_capture.sqlite_datetime_encoders(Post, "default")) >= {"created_at", "updated_at"}

    fast = rows_of()
    monkeypatch.setattr(logical_capture, "sqlite_datetime_encoders", lambda model, alias: {})
    assert rows_of() == fast

    columns = None
    values = {}
    for kind, body in fast:
        if kind == payload.MODEL:
            columns = payload.load_record(kind, body)
            continue
        if columns["model"] == "blog.Post":
            at = columns["columns"].index("created_at")
            values.update({row[0]: row[at] for row in payload.load_rows(body)})
    assert values[first] == "2026-01-02T03:04:05+00:00"
    assert values[second] == "2026-01-02T03:04:05.500000+00:00"
    assert values[third] == "2026-01-02T03:04:05.000001+00:00"


def test_no_stored_text_path_away_from_utc(settings):
    settings.USE_TZ = False
    assert logical_capture.sqlite_datetime_encoders(Post, "default") == {}
