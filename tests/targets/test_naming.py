from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dbs_admin.targets.naming import backup_file_name, parse_backup_file_name


def test_name_format_and_round_trip():
    created = datetime(2026, 11, 23, 2, 0, 0, 123456, tzinfo=UTC)
    name = backup_file_name(created, "logical", "Before the Migration!")
    assert name == "dbs-20261123T020000123456Z-logical-before-the-migration.dbs"
    assert parse_backup_file_name(name) == (created, "logical", "before-the-migration")


def test_non_utc_input_is_stored_as_utc():
    auckland = datetime(2026, 11, 23, 0, 30, tzinfo=ZoneInfo("Pacific/Auckland"))  # NZDT, UTC+13
    name = backup_file_name(auckland, "native")
    assert name == "dbs-20261122T113000000000Z-native.dbs"
    assert parse_backup_file_name(name)[0] == auckland


def test_label_that_slugs_to_nothing_is_dropped_and_long_labels_are_cut():
    created = datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=-5)))
    assert backup_file_name(created, "logical", "!!!") == "dbs-20260102T050000000000Z-logical.dbs"
    long = backup_file_name(created, "logical", "x" * 500)
    assert len(long) < 120 and parse_backup_file_name(long)[2] == "x" * 60


def test_naive_datetimes_and_odd_kinds_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        backup_file_name(datetime(2026, 1, 1), "logical")
    with pytest.raises(ValueError, match="kind"):
        backup_file_name(datetime(2026, 1, 1, tzinfo=UTC), "Logical-x")


@pytest.mark.parametrize("name", [
    "backup.dbs", "dbs-20261123T020000123456Z-logical.dbs.sha256", "dbs-20261123T0200001234Z-logical.dbs",
    "dbs-20261399T020000123456Z-logical.dbs", "dbs-20261123T020000123456Z-.dbs", "../dbs-20261123T020000123456Z-x.dbs",
    ".dbs-20261123T020000123456Z-logical.dbs.abc.part", "dbs-20261123T020000123456Z-logical.dbs\n",
])
def test_foreign_names_do_not_parse(name):
    assert parse_backup_file_name(name) is None


def test_names_sort_in_time_order():
    rng = random.Random(4)
    times = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**13)) for _ in range(200)]
    names = [backup_file_name(t, "logical") for t in times]
    assert sorted(names) == [backup_file_name(t, "logical") for t in sorted(times)]
