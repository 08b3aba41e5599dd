"""The storage target: S3 through django-storages against moto's real S3 server, FileSystemStorage, InMemoryStorage."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from boto3.s3.transfer import TransferConfig

from dbs_admin.backups.errors import BackupExistsError
from dbs_admin.targets.configured import build_target, get_target
from dbs_admin.targets.errors import StoredFileMissingError, TargetConfigError, TargetError
from dbs_admin.targets.storage import StorageError

from .conftest import make_file, name_at

MiB = 1024 * 1024
SMALL_PARTS = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


class Raw:
    """What is really in the storage, read around the target (the bucket through boto3, or the storage API)."""

    def __init__(self, target, s3=None, bucket=None):
        self.target, self.s3, self.bucket = target, s3, bucket

    def names(self) -> list[str]:
        if self.s3 is not None:
            return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []))
        storage = self.target.storage
        try:
            return sorted(self.target.prefix + n for n in storage.listdir(self.target.prefix.rstrip("/"))[1])
        except FileNotFoundError:
            return []

    def read(self, key: str) -> bytes:
        if self.s3 is not None:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        with self.target.storage.open(key, "rb") as f:
            return f.read()

    def write(self, key: str, data: bytes) -> None:
        if self.s3 is not None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            return
        from django.core.files.base import ContentFile

        storage = self.target.storage
        if storage.exists(key):
            storage.delete(key)
        storage.save(key, ContentFile(data))


@pytest.fixture(params=["s3", "filesystem", "memory"])
def kind(request):
    return request.param


@pytest.fixture
def target_and_raw(kind, settings, tmp_path, s3_storage, s3_server, s3_bucket):
    if kind == "s3":
        s3_storage(transfer_config=SMALL_PARTS)
        raw = Raw(None, s3_server.client(), s3_bucket)
    elif kind == "filesystem":
        settings.STORAGES = {**settings.STORAGES, "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "fs")}}}
        raw = Raw(None)
    else:
        settings.STORAGES = {**settings.STORAGES, "backups": {
            "BACKEND": "django.core.files.storage.InMemoryStorage"}}
        raw = Raw(None)
    target = build_target("offsite", {"kind": "storage", "storage": "backups", "prefix": "site/dbs"})
    raw.target = target
    return target, raw


def test_round_trip_publishes_verifies_lists_reads_and_deletes(target_and_raw, source_dir, tmp_path, kind):
    target, raw = target_and_raw
    source = make_file(source_dir, 11 * MiB + 77)  # three parts of 5 MiB on S3: a multipart upload
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    older, name = name_at(30), name_at(0)
    target.put(make_file(source_dir, 10, "small"), older)
    seen = []
    stored = target.put(source, name, progress=lambda done, total: seen.append((done, total)))

    assert (stored.name, stored.size, stored.sha256) == (name, len(data), digest)
    assert seen[-1] == (len(data), len(data)) and len(seen) > 1  # progress in bytes, up to the whole file
    assert raw.names() == sorted(f"site/dbs/{n}" for n in (name, f"{name}.sha256", older, f"{older}.sha256"))
    assert raw.read(f"site/dbs/{name}") == data
    assert raw.read(f"site/dbs/{name}.sha256").decode() == f"{digest}  {name}\n"  # sha256sum -c format
    listed = target.list()
    assert [(f.name, f.size, f.sha256) for f in listed] == [
        (name, len(data), digest), (older, 10, hashlib.sha256(raw.read(f"site/dbs/{older}")).hexdigest())]
    assert target.exists(name) and not target.exists(name_at(5))
    with target.open(name) as stream:
        assert stream.read(10) == data[:10]
        assert stream.read() == data[10:]
    with target.open_ranged(name) as ranged:  # reads only the regions asked for (a manifest at the end, say)
        ranged.seek(-100, 2)
        assert ranged.read() == data[-100:]
        ranged.seek(5 * MiB + 3)
        assert ranged.read(MiB) == data[5 * MiB + 3: 6 * MiB + 3]
    assert target.fetch(name, tmp_path / "got" / "x.dbs").read_bytes() == data
    assert target.verify(name).sha256 == digest
    assert (target.local_path(name) is not None) == (kind == "filesystem")

    target.delete(name)
    assert raw.names() == sorted([f"site/dbs/{older}", f"site/dbs/{older}.sha256"])
    with pytest.raises(StoredFileMissingError, match="offsite"):
        target.delete(name)
    with pytest.raises(StoredFileMissingError):
        target.fetch(name, tmp_path / "again.dbs")
    assert not (tmp_path / "again.dbs").exists()


def test_an_existing_name_is_refused_and_left_intact(target_and_raw, source_dir):
    target, raw = target_and_raw
    name = name_at(0)
    target.put(make_file(source_dir, 100, "a"), name)
    before = raw.read(f"site/dbs/{name}")
    with pytest.raises(BackupExistsError, match="never overwritten"):
        target.put(make_file(source_dir, 200, "b"), name)
    assert raw.read(f"site/dbs/{name}") == before


def test_an_object_without_its_sidecar_is_no_backup_and_is_swept(target_and_raw, source_dir, tmp_path):
    """What a killed upload can leave (the object, never its sidecar) is not listed, opened or fetched."""
    target, raw = target_and_raw
    name, kept = name_at(1), name_at(2)
    target.put(make_file(source_dir, 100), kept)
    raw.write(f"site/dbs/{name}", b"half a backup")
    assert [f.name for f in target.list()] == [kept]
    assert not target.exists(name)
    with pytest.raises(StoredFileMissingError):
        target.open(name)
    with pytest.raises(StoredFileMissingError):
        target.fetch(name, tmp_path / "x.dbs")
    assert target.sweep(timedelta(days=1)) == []  # younger than the cut-off: possibly an upload in progress
    assert target.sweep(timedelta(0)) == [f"site/dbs/{name}"]
    assert f"site/dbs/{name}" not in raw.names() and target.exists(kept)
    raw.write(f"site/dbs/{name}", b"half a backup")
    assert target.discard(name) == [f"site/dbs/{name}"]
    assert target.discard(kept) == [] and target.exists(kept)  # a published backup is never discarded


def test_a_damaged_copy_fails_verification_and_download(target_and_raw, source_dir, tmp_path):
    target, raw = target_and_raw
    name = name_at(0)
    target.put(make_file(source_dir, 4096), name)
    data = bytearray(raw.read(f"site/dbs/{name}"))
    data[100] ^= 0x5A
    raw.write(f"site/dbs/{name}", bytes(data))
    with pytest.raises(TargetError, match="does not match its recorded sha256"):
        target.verify(name)
    with pytest.raises(TargetError, match="damaged"):
        target.fetch(name, tmp_path / "got.dbs")
    assert list(tmp_path.glob("*got*")) == []  # nothing half-written at the destination


def test_s3_upload_is_verified_by_the_servers_checksum_and_multipart_leftovers_are_aborted(
        s3_storage, s3_server, s3_bucket, source_dir):
    s3_storage(transfer_config=SMALL_PARTS)
    target = build_target("offsite", {"kind": "storage", "storage": "backups"})
    client = s3_server.client()
    name = name_at(0)
    target.put(make_file(source_dir, 11 * MiB), name)
    head = client.head_object(Bucket=s3_bucket, Key=name, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] and head["ETag"].endswith('-3"')  # three parts, each checked by the server

    client.create_multipart_upload(Bucket=s3_bucket, Key=name_at(1))  # an upload killed half-way
    assert [f.name for f in target.list()] == [name]
    assert target.discard(name_at(1)) == [name_at(1)]
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    client.create_multipart_upload(Bucket=s3_bucket, Key=name_at(2))
    assert target.sweep(timedelta(hours=1)) == [name_at(2)]  # moto dates every upload in 2010: all are old


def test_s3_storage_location_and_object_parameters_are_honoured(s3_storage, s3_server, s3_bucket, source_dir):
    s3_storage(location="media-and-more", object_parameters={"StorageClass": "STANDARD_IA"})
    target = build_target("offsite", {"kind": "storage", "storage": "backups", "prefix": "dbs"})
    name = name_at(0)
    target.put(make_file(source_dir, 1000), name)
    key = f"media-and-more/dbs/{name}"
    assert s3_server.client().head_object(Bucket=s3_bucket, Key=key)["StorageClass"] == "STANDARD_IA"
    assert [f.name for f in target.list()] == [name]


def test_missing_bucket_is_one_line_naming_the_target_without_secrets(s3_storage, s3_server, source_dir):
    s3_storage(bucket_name="no-such-bucket-here")
    target = build_target("offsite", {"kind": "storage", "storage": "backups"})
    for call in (target.list, lambda: target.put(make_file(source_dir, 10), name_at(0))):
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert "target 'offsite'" in message and "does not exist (NoSuchBucket)" in message
        assert "\n" not in message and s3_server.secret_key not in message
        assert not info.value.transient


def test_unreachable_endpoint_is_transient_and_named(settings, s3_server, source_dir):
    from botocore.config import Config

    from tests.services import free_port

    settings.STORAGES = {**settings.STORAGES, "backups": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        **s3_server.storage_options("bucket"), "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "client_config": Config(retries={"max_attempts": 1}, connect_timeout=2)}}}
    target = get_target_from({"kind": "storage", "storage": "backups"}, settings)
    with pytest.raises(StorageError, match="target 'offsite'.*endpoint is unreachable") as info:
        target.list()
    assert info.value.transient


def get_target_from(entry: dict, settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {"offsite": entry}}
    return get_target("offsite")


def test_settings_are_checked_with_the_entry_named(settings):
    with pytest.raises(TargetConfigError, match=r"\['offsite'\].*STORAGES has no alias 'nope'"):
        build_target("offsite", {"kind": "storage", "storage": "nope"})
    with pytest.raises(TargetConfigError, match="unknown keys.*access_key"):
        build_target("offsite", {"kind": "storage", "storage": "default", "access_key": "x"})
    with pytest.raises(TargetConfigError, match="plain folder"):
        build_target("offsite", {"kind": "storage", "storage": "default", "prefix": "../up"})


def test_access_denied_and_missing_credentials_read_as_one_line_with_what_to_check():
    """moto's server accepts any key, so S3's own refusals are built as botocore raises them."""
    from botocore.exceptions import ClientError, NoCredentialsError

    from dbs_admin.targets.s3 import describe_error

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    wrapped = RuntimeError("Failed to upload")  # s3transfer wraps the client's error
    wrapped.__cause__ = denied
    assert describe_error(wrapped) == (
        "access denied (AccessDenied): check the storage's credentials and the bucket's policy", False)
    text, transient = describe_error(NoCredentialsError())
    assert text.startswith("no credentials: set them in the storage's settings or the environment") and not transient
    assert describe_error(ValueError("not boto")) is None
