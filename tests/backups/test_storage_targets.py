"""Backups on storage targets end to end (S3 on moto's real server, and FileSystemStorage), and several copies.

Everything goes through the commands a user runs: back up, list, validate, restore into a fresh database
(the other engine's alias is used on the PostgreSQL run), drill, prune. The database engine is the one the
suite runs on, so CI covers SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from dbs_admin.drills.runner import run_drill
from dbs_admin.models import Backup, BackupCopy

from .helpers import build_site, media_contents, table_contents, wipe

PASSPHRASE = "storage targets passphrase"
FRESH = "pg_b" if django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else "sq_b"
pytestmark = pytest.mark.django_db(databases=["default", FRESH])


@pytest.fixture
def storage_targets(settings, tmp_path, s3_storage, monkeypatch, media_root):
    """Three targets: a local folder, S3 (moto) and a FileSystemStorage, each configured as a user would."""
    s3_storage("backups")
    settings.STORAGES = {**settings.STORAGES, "fsbackups": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "fs")}}}
    settings.DBS_ADMIN = {
        **settings.DBS_ADMIN,
        "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "local")},
                    "s3": {"kind": "storage", "storage": "backups", "prefix": "site"},
                    "fs": {"kind": "storage", "storage": "fsbackups", "prefix": "dbs"}},
        "PRIVATE_ROOT": str(tmp_path / "private"),
        "ARGON2": {"time_cost": 1, "memory_kib": 1024, "parallelism": 1, "allow_weak": True},
        "RETENTION": {"*": {"last": 1}},
    }
    monkeypatch.setenv("DBS_PASSPHRASE", PASSPHRASE)
    return tmp_path


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, "--no-input", stdout=out, verbosity=1) if args[0] in (
        "dbs_backup", "dbs_restore", "dbs_validate") else call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("target", ["s3", "fs"])
def test_backup_list_validate_restore_drill_prune_through_a_storage_target(storage_targets, target, media_root):
    build_site("default", posts=12, images=2)
    before, files = table_contents("default"), media_contents(media_root)

    out = run("dbs_backup", "--target", target, "--label", "first")
    name = out.split(":")[0]
    assert f"verified, on target {target}" in out
    listed = json.loads(run("dbs_list", "--target", target, "--json"))
    assert [(r["name"], r["status"]) for r in listed] == [(name, "ok")]
    assert listed[0]["sha256"] == Backup.objects.get(name=name).sha256
    assert "OK" in run("dbs_validate", name, "--target", target, "--decrypt")

    wipe(media_root)
    out = run("dbs_restore", "--latest", "--target", target, "--database", FRESH)
    assert f"(read from target '{target}')" in out
    assert table_contents(FRESH) == before and media_contents(media_root) == files

    report = run_drill(target=target, passphrase=PASSPHRASE, alert=False)
    assert report.passed, [(c.name, c.detail) for c in report.checks.all() if not c.passed] or report.error
    assert f"the copy on target '{target}'" in report.checks.get(name="fetch").detail

    newer = run("dbs_backup", "--target", target, "--label", "second").split(":")[0]
    out = run("dbs_prune", "--target", target)
    assert f"deleted {name}" in out and f"keep    {newer}" in out
    assert [r["name"] for r in json.loads(run("dbs_list", "--target", target, "--json"))] == [newer]
    assert not Backup.objects.filter(name=name).exists()


def test_two_targets_one_failing_keep_the_good_copy_and_name_the_other(storage_targets, settings, s3_server,
                                                                       media_root):
    settings.STORAGES = {**settings.STORAGES, "nobucket": {
        "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_server.storage_options("no-such-bucket")}}
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"], "broken": {"kind": "storage", "storage": "nobucket"}}}
    build_site("default", posts=4, images=1)
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("dbs_backup", "--target", "s3", "--target", "broken", "--target", "fs", "--no-input",
                     stdout=out, stderr=err)

    message = str(failed.value)
    assert message.startswith("backup failed on target 'broken' (the other copies are stored):")
    assert "does not exist (NoSuchBucket)" in message and "\n" not in message
    assert s3_server.secret_key not in message + out.getvalue() + err.getvalue()
    assert "verified, on target s3, fs" in out.getvalue()
    backup = Backup.objects.get()
    copies = {c.target: (c.state, c.detail) for c in backup.copies.all()}
    assert copies["s3"] == (BackupCopy.State.STORED, "") and copies["fs"][0] == BackupCopy.State.STORED
    assert copies["broken"][0] == BackupCopy.State.FAILED and "NoSuchBucket" in copies["broken"][1]

    # Reading through the failed target falls back to a copy that verifies, and says which.
    out = run("dbs_restore", backup.name, "--target", "broken", "--database", FRESH, "--dry-run")
    assert "(read from target 'fs')" in out or "(read from target 's3')" in out


def test_a_damaged_copy_is_passed_over_for_one_that_verifies(storage_targets, s3_server, s3_bucket, media_root):
    build_site("default", posts=3, images=0)
    name = run("dbs_backup", "--target", "s3", "--target", "fs").split(":")[0]
    client, key = s3_server.client(), f"site/{name}"
    data = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    data[5000] ^= 0x5A
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(data))  # the copy on S3 rots
    out = run("dbs_restore", name, "--target", "s3", "--database", FRESH)
    assert "(read from target 'fs')" in out and "healed" not in out


def test_every_copy_failing_fails_the_backup_and_records_nothing(storage_targets, settings, s3_server):
    settings.STORAGES = {**settings.STORAGES, "nobucket": {
        "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_server.storage_options("no-such-bucket")}}
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {
        "a": {"kind": "storage", "storage": "nobucket"}, "b": {"kind": "storage", "storage": "nobucket",
                                                                "prefix": "x"}}}
    with pytest.raises(CommandError, match="no copy of the backup could be stored: target 'a': .*target 'b'"):
        call_command("dbs_backup", "--target", "a", "--target", "b", "--no-input")
    assert not Backup.objects.exists()
    assert list((storage_targets / "private").glob("create-*")) == []
