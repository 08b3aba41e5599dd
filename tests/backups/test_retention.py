"""Retention: a pure plan checked on synthetic calendars, then applied to real files and records."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from dbs_admin.backups.retention import RetentionPolicy, plan_retention, prune
from dbs_admin.models import AuditEvent, Backup, BackupCopy
from dbs_admin.targets.errors import TargetConfigError
from dbs_admin.targets.local import LocalTarget
from dbs_admin.targets.naming import backup_file_name

GFS = {"last": 5, "daily": 7, "weekly": 4, "monthly": 12}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def names(*moments: datetime) -> set[str]:
    return {backup_file_name(m, "logical") for m in moments}


def every_six_hours(start: datetime, end: datetime) -> list[str]:
    out, moment = [], start
    while moment <= end:
        out.append(backup_file_name(moment, "logical"))
        moment += timedelta(hours=6)
    return out


def test_four_hundred_days_of_six_hourly_backups_keep_exactly_the_gfs_set():
    now = utc(2026, 11, 23, 20, 0)  # a Monday
    files = every_six_hours(utc(2025, 10, 19, 0), utc(2026, 11, 23, 18))
    assert len(files) == 401 * 4
    last = names(utc(2026, 11, 23, 18), utc(2026, 11, 23, 12), utc(2026, 11, 23, 6), utc(2026, 11, 23, 0),
                 utc(2026, 11, 22, 18))
    daily = names(*(utc(2026, 11, d, 18) for d in range(17, 24)))
    weekly = names(utc(2026, 11, 23, 18), utc(2026, 11, 22, 18), utc(2026, 11, 15, 18), utc(2026, 11, 8, 18))
    monthly = names(
        utc(2026, 11, 23, 18), utc(2026, 10, 31, 18), utc(2026, 9, 30, 18), utc(2026, 8, 31, 18),
        utc(2026, 7, 31, 18), utc(2026, 6, 30, 18), utc(2026, 5, 31, 18), utc(2026, 4, 30, 18),
        utc(2026, 3, 31, 18), utc(2026, 2, 28, 18), utc(2026, 1, 31, 18), utc(2025, 12, 31, 18),
    )
    expected = last | daily | weekly | monthly
    # last 5; daily adds 17-21 Nov; weekly adds 15 and 8 Nov; monthly adds 11 month ends.
    assert len(expected) == 5 + 5 + 2 + 11

    plan = plan_retention(files, GFS, now=now, verified_names=(), tz=UTC)

    assert set(plan.keep) == expected
    assert set(plan.delete) == set(files) - expected
    assert list(plan.keep) == sorted(plan.keep, reverse=True) and list(plan.delete) == sorted(plan.delete, reverse=True)
    newest = backup_file_name(utc(2026, 11, 23, 18), "logical")
    assert plan.reasons[newest] == ("last 5 (#1)", "daily 2026-11-23", "weekly 2026-W48", "monthly 2026-11")
    assert plan.reasons[backup_file_name(utc(2026, 2, 28, 18), "logical")] == ("monthly 2026-02",)
    assert plan.reasons[backup_file_name(utc(2026, 2, 28, 12), "logical")] == ("outside every retention rule",)


def test_the_newest_verified_backup_survives_however_old():
    now = utc(2026, 11, 23, 20, 0)
    files = every_six_hours(utc(2025, 10, 19, 0), utc(2026, 11, 23, 18))
    newest_verified = backup_file_name(utc(2025, 10, 20, 6), "logical")  # older than every GFS window
    older_verified = backup_file_name(utc(2025, 10, 19, 0), "logical")
    plan = plan_retention(files, GFS, now=now, verified_names={newest_verified, older_verified}, tz=UTC)
    assert newest_verified in plan.keep and plan.reasons[newest_verified] == ("newest verified backup",)
    assert older_verified in plan.delete
    assert len(plan.keep) == 23 + 1


def test_a_recent_verified_backup_needs_no_extra_keep():
    files = [backup_file_name(utc(2026, 11, 23 - d, 3), "logical") for d in range(10)]
    plan = plan_retention(files, {"last": 3}, now=utc(2026, 11, 23, 12), verified_names={files[1]}, tz=UTC)
    assert plan.keep == tuple(files[:3])
    assert plan.reasons[files[1]] == ("last 3 (#2)", "newest verified backup")


def test_day_boundaries_are_those_of_the_site_time_zone(settings):
    """00:30 in Auckland is the previous day in UTC: the local day decides which backup a day keeps."""
    a = backup_file_name(utc(2026, 11, 22, 9, 0), "logical")  # 22:00 NZDT, 22 Nov
    b = backup_file_name(utc(2026, 11, 22, 10, 30), "logical")  # 23:30 NZDT, 22 Nov
    c = backup_file_name(utc(2026, 11, 22, 11, 30), "logical")  # 00:30 NZDT, 23 Nov
    d = backup_file_name(utc(2026, 11, 21, 12, 0), "logical")  # 01:00 NZDT, 22 Nov
    now = utc(2026, 11, 23, 5, 0)  # 18:00 NZDT, 23 Nov
    settings.TIME_ZONE = "Pacific/Auckland"
    plan = plan_retention([a, b, c, d], {"daily": 2}, now=now)
    assert set(plan.keep) == {b, c} and plan.reasons[c] == ("daily 2026-11-23",)
    assert plan.reasons[b] == ("daily 2026-11-22",)
    settings.TIME_ZONE = "UTC"  # the same files under UTC days: only c (22 Nov UTC) is kept
    assert plan_retention([a, b, c, d], {"daily": 2}, now=now).keep == (c,)


def test_month_and_week_boundaries_follow_the_site_time_zone(settings):
    e = backup_file_name(utc(2026, 10, 31, 12), "logical")  # 01:00 NZDT 1 Nov (Sunday, ISO week 44)
    f = backup_file_name(utc(2026, 10, 31, 10), "logical")  # 23:00 NZDT 31 Oct
    g = backup_file_name(utc(2026, 10, 30, 12), "logical")  # 01:00 NZDT 31 Oct
    now = utc(2026, 11, 15, 0)
    settings.TIME_ZONE = "Pacific/Auckland"
    plan = plan_retention([e, f, g], {"monthly": 2}, now=now)
    assert plan.keep == (e, f) and plan.reasons[e] == ("monthly 2026-11",) and plan.reasons[f] == ("monthly 2026-10",)
    settings.TIME_ZONE = "UTC"
    assert plan_retention([e, f, g], {"monthly": 2}, now=now).keep == (e,)
    settings.TIME_ZONE = "America/New_York"  # Sat 31 Oct 08:00 / 06:00, Fri 30 Oct: all in ISO week 44
    plan = plan_retention([e, f, g], {"weekly": 3}, now=utc(2026, 11, 2, 3))  # Sun 1 Nov 22:00 EST: week 44
    assert plan.keep == (e,) and plan.reasons[e] == ("weekly 2026-W44",)
    settings.TIME_ZONE = "Asia/Tokyo"  # now is Mon 2 Nov 12:00 JST: week 45, so week 44 is the second window
    assert plan_retention([e, f, g], {"weekly": 1}, now=utc(2026, 11, 2, 3)).keep == ()
    assert plan_retention([e, f, g], {"weekly": 2}, now=utc(2026, 11, 2, 3)).keep == (e,)


def test_plan_is_deterministic_and_never_touches_foreign_names():
    rng = random.Random(7)
    files = every_six_hours(utc(2026, 1, 1), utc(2026, 3, 1)) + ["manual-copy.dbs", "dbs-oops.dbs"]
    shuffled = files[:]
    rng.shuffle(shuffled)
    now = utc(2026, 3, 2)
    first = plan_retention(files, GFS, now=now, tz=UTC)
    assert plan_retention(shuffled, GFS, now=now, tz=UTC) == first
    assert {"manual-copy.dbs", "dbs-oops.dbs"} <= set(first.keep)
    assert "never pruned" in first.reasons["manual-copy.dbs"][0]


@pytest.mark.parametrize(("policy", "message"), [
    ({"last": -1}, "whole number >= 0"),
    ({"last": True}, "whole number >= 0"),
    ({"last": 2, "yearly": 3}, r"unknown keys \['yearly'\]"),
    ({"last": 0, "daily": 0}, "keeps nothing"),
    ([7], "must be a dict"),
])
def test_bad_policies_are_refused(policy, message):
    with pytest.raises(TargetConfigError, match=message):
        plan_retention([], policy, now=utc(2026, 1, 1), tz=UTC)


def test_policy_per_target_falls_back_to_star(settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RETENTION": {"*": {"last": 3}, "offsite": {"monthly": 24}}}
    assert RetentionPolicy.for_target("offsite") == RetentionPolicy(monthly=24)
    assert RetentionPolicy.for_target("local") == RetentionPolicy(last=3)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RETENTION": {"offsite": {"last": 1}}}
    with pytest.raises(TargetConfigError, match="no retention policy for target 'local'"):
        RetentionPolicy.for_target("local")


# -- prune: the plan applied to a real folder and the records ------------------------------------------------


@pytest.fixture
def pruned_setup(settings, tmp_path):
    """Ten daily backups on a local target with their records; policy: keep the last 2."""
    folder = tmp_path / "store"
    settings.DBS_ADMIN = {
        **settings.DBS_ADMIN,
        "TARGETS": {"local": {"kind": "local", "path": str(folder)}},
        "DEFAULT_TARGET": "local",
        "RETENTION": {"*": {"last": 2}},
    }
    target = LocalTarget("local", folder)
    source = tmp_path / "payload"
    source.write_bytes(os.urandom(1000))
    now = timezone.now()
    files = [backup_file_name(now - timedelta(days=k, minutes=5), "logical") for k in range(10)]
    for name in files:
        target.put(source, name)
    target.put(source, "manual-copy.dbs")
    for k, name in enumerate(files[:9]):  # the oldest has no record at all
        status = Backup.Status.OK if k in (6, 7) else Backup.Status.UNVERIFIED
        backup = Backup.objects.create(name=name, status=status, size=1000)
        BackupCopy.objects.create(backup=backup, target="local", path=name)
        if k == 8:
            BackupCopy.objects.create(backup=backup, target="offsite", path=name)
    Backup.objects.create(name="dbs-20200101T000000000000Z-logical.dbs")  # a record with no copy row here
    return target, files


@pytest.mark.django_db
def test_dry_run_deletes_nothing(pruned_setup):
    target, files = pruned_setup
    before = sorted(os.listdir(target.path))
    plan = prune("local", dry_run=True)
    assert set(plan.keep) == {files[0], files[1], files[6], "manual-copy.dbs"}
    assert plan.reasons[files[6]] == ("newest verified backup",)
    assert sorted(os.listdir(target.path)) == before
    assert Backup.objects.count() == 10 and BackupCopy.objects.count() == 10 and not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_prune_deletes_files_sidecars_and_records(pruned_setup):
    target, files = pruned_setup
    plan = prune()
    kept = [files[0], files[1], files[6], "manual-copy.dbs"]
    assert set(plan.delete) == set(files) - set(kept)
    assert sorted(os.listdir(target.path)) == sorted(kept + [f"{n}.sha256" for n in kept])
    remaining = set(Backup.objects.values_list("name", flat=True))
    # Deleted backups lose their row, except the one still held offsite and the record without a local copy row.
    assert remaining == {files[0], files[1], files[6], files[8], "dbs-20200101T000000000000Z-logical.dbs"}
    assert list(BackupCopy.objects.filter(backup__name=files[8]).values_list("target", flat=True)) == ["offsite"]
    events = AuditEvent.objects.filter(action="prune")
    assert sorted(events.values_list("object_repr", flat=True)) == sorted(plan.delete)
    assert "target 'local'" in events.first().detail
    # Running it again finds nothing more to delete.
    assert prune("local").delete == ()


@pytest.mark.django_db
def test_prune_with_a_policy_of_its_own(pruned_setup):
    target, files = pruned_setup
    plan = prune("local", dry_run=True, policy={"last": 4})
    assert set(plan.keep) == {*files[:4], files[6], "manual-copy.dbs"}
    with pytest.raises(TargetConfigError, match="retention policy of target 'local'"):
        prune("local", policy={"last": -2})
