"""Values from a backup become exactly what Django itself would hand the target database."""

from __future__ import annotations

import pytest
from django.db import models
from django.db.utils import ConnectionHandler
from django.test import override_settings

from dbs_admin.backups.selection import decoder

STAMPS = [  # what sites write, and the other forms ISO 8601 allows
    "2026-11-23T02:00:00+00:00",
    "2026-11-23T02:00:00.123456+00:00",
    "2026-11-23T23:59:59.000001+02:00",  # another offset: lands on the next day in UTC
    "2026-03-29T01:30:00-05:00",
    "2026-11-23T02:00:00",  # naive, as a site without time zones writes it
    "2026-11-23 02:00",  # short forms ISO allows
    "2026-11-23T02:00:00.000000+00:00",  # forms near the shortcut for UTC text: none may take it wrongly
    "2026-11-23T02:00:00.120+00:00",
    "2026-11-23T02:00:00,123456+00:00",
    "2026-11-23 02:00:00.123456+00:00",
    "2026-11-23T02:00:00.123456-00:00",
    "2026-11-23T02:00:00Z",
    "2026-01-01T00:00:00+00:00",
    "2026-11-23T23:59:59.999999+00:00",
]


def connection_for(engine: str):
    """A connection object of ``engine`` whatever the suite's own database is; decoders never open it."""
    return ConnectionHandler({"default": {"ENGINE": f"django.db.backends.{engine}", "NAME": "unused"}})["default"]


@pytest.fixture
def sqlite_connection():
    return connection_for("sqlite3")


@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
@pytest.mark.parametrize("engine", ["sqlite3", "postgresql"])
@pytest.mark.parametrize("time_zone", [None, "Europe/Paris"])
@pytest.mark.parametrize("site_zone", ["UTC", "America/New_York"])
def test_datetimes_are_stored_as_django_would_store_them(engine, time_zone, site_zone, settings):
    settings.TIME_ZONE = site_zone  # where a naive value is taken to be
    connection = connection_for(engine)
    connection.settings_dict["TIME_ZONE"] = time_zone
    field = models.DateTimeField()
    field.set_attributes_from_name("at")
    convert = decoder(field, connection)
    for stamp in STAMPS:
        expected = field.get_db_prep_save(field.to_python(stamp), connection)
        assert convert(stamp) == expected, stamp
    assert convert(None) is None


def test_sqlite_datetimes_without_time_zone_support_keep_djangos_refusal(sqlite_connection):
    field = models.DateTimeField()
    field.set_attributes_from_name("at")
    with override_settings(USE_TZ=False):
        convert = decoder(field, sqlite_connection)
        assert convert("2026-11-23T02:00:00") == "2026-11-23 02:00:00"
        with pytest.raises(ValueError, match="does not support timezone-aware"):
            convert("2026-11-23T02:00:00+00:00")


@pytest.mark.parametrize("engine", ["sqlite3", "postgresql"])
def test_a_malformed_timestamp_is_refused_not_stored(engine):
    """Shaped like UTC text but not a date: refused as Django refuses it, never written as it stands."""
    from django.core.exceptions import ValidationError

    field = models.DateTimeField()
    field.set_attributes_from_name("at")
    convert = decoder(field, connection_for(engine))
    for bad in ("2026-13-45T02:00:00+00:00", "2026-11-23T25:61:00.123456+00:00"):
        with pytest.raises(ValidationError):
            convert(bad)
