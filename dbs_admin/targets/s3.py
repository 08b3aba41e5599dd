"""What a storage target does differently when its Django storage is django-storages' S3 backend.

Why a module of its own: the Storage API has no atomic publication, no
server-side checksum and no notion of an interrupted upload; S3 has all
three, and using them makes a backup cheaper and safer than the generic path:

- **Atomic publication**: boto3's managed transfer (the storage's own
  ``transfer_config``, multipart above its threshold, constant memory) makes
  the object appear under its key only when CompleteMultipartUpload
  succeeds; a killed upload leaves an *incomplete multipart upload*, which
  lists as no object. :func:`abort_uploads` removes those (the reaper and
  retention call it; a bucket lifecycle rule does the same, see README).
- **Verification without a second read**: the upload asks S3 for SHA-256
  checksums (``ChecksumAlgorithm``); every part is checked by the server on
  arrival, and the object's checksum (for a multipart object, the SHA-256
  of the parts' SHA-256 digests) is compared with the same value computed
  from the local file.
- **Streaming reads**: a ``GetObject`` body streamed as it arrives (the
  storage's own ``open`` spools the whole object to a temporary file first).

Credentials are the storage's own (``AWS_*`` settings, ``OPTIONS`` of its
``STORAGES`` entry, or boto3's environment and instance roles); nothing here
reads or stores one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from dbs_admin.targets.base import CHUNK, SeekableReader

# S3 allows at most this many parts; s3transfer grows the part size to fit, and so must our expectation.
_MAX_PARTS = 10000


def is_s3(storage: Any) -> bool:
    """Whether ``storage`` is django-storages' S3 backend (imported only when installed)."""
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:
        return False
    return isinstance(storage, S3Storage)


def key_of(storage: Any, name: str) -> str:
    """The object key of ``name``, inside the storage's own ``location`` prefix."""
    from storages.utils import clean_name

    return storage._normalize_name(clean_name(name))


def _client(storage: Any) -> Any:
    return storage.connection.meta.client


def local_checksums(path: Path, part_size: int | None) -> tuple[str, str, int]:
    """``(S3's ChecksumSHA256 of path uploaded in parts of part_size, sha256 hex, size)`` in one read.

    A multipart object's checksum is the SHA-256 of its parts' SHA-256 digests.
    """
    whole, part = hashlib.sha256(), hashlib.sha256()
    parts: list[bytes] = []
    size = in_part = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK if part_size is None else min(CHUNK, part_size - in_part)):
            whole.update(block)
            size += len(block)
            if part_size is None:
                continue
            part.update(block)
            in_part += len(block)
            if in_part == part_size:
                parts.append(part.digest())
                part, in_part = hashlib.sha256(), 0
    if part_size is None:
        checksum = whole.digest()
    else:
        if in_part:
            parts.append(part.digest())
        checksum = hashlib.sha256(b"".join(parts)).digest()
    return base64.b64encode(checksum).decode("ascii"), whole.hexdigest(), size


def part_size_for(storage: Any, size: int) -> int | None:
    """The part size s3transfer will use for ``size`` bytes, or None when it sends one PutObject."""
    from s3transfer.utils import ChunksizeAdjuster

    config = storage.transfer_config
    if size < config.multipart_threshold:
        return None
    return ChunksizeAdjuster(max_parts=_MAX_PARTS).adjust_chunksize(config.multipart_chunksize, size)


class _Counter:
    """boto3 calls back from its worker threads with increments; ``progress`` wants the running total."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self._lock = threading.Lock()

    def __call__(self, increment: int) -> None:
        with self._lock:
            self.done += increment
            if self.progress is not None:
                self.progress(self.done, self.total)


def upload(storage: Any, local_path: Path, key: str, *, progress: Callable[[int, int], None] | None) -> None:
    """Upload with boto3's managed transfer under ``key``; visible only once complete."""
    params = dict(storage.get_object_parameters(key))
    params.setdefault("ContentType", "application/octet-stream")
    params["ChecksumAlgorithm"] = "SHA256"
    size = local_path.stat().st_size
    storage.bucket.Object(key).upload_file(
        str(local_path), ExtraArgs=params, Config=storage.transfer_config, Callback=_Counter(size, progress),
    )


def stored_checksum(storage: Any, key: str) -> tuple[str | None, int]:
    """``(S3's ChecksumSHA256 of key without its "-<parts>" suffix, or None when it keeps none; size)``."""
    head = _client(storage).head_object(Bucket=storage.bucket_name, Key=key, ChecksumMode="ENABLED")
    stored = head.get("ChecksumSHA256")
    return (stored.split("-")[0] if stored else None), int(head.get("ContentLength", -1))


def put_small(storage: Any, key: str, data: bytes) -> None:
    _client(storage).put_object(Bucket=storage.bucket_name, Key=key, Body=data,
                                ContentType="text/plain", **_write_params(storage, key))


def _write_params(storage: Any, key: str) -> dict[str, Any]:
    params = dict(storage.get_object_parameters(key))
    params.pop("ContentType", None)
    return params


def list_objects(storage: Any, prefix: str) -> Iterator[tuple[str, int, datetime]]:
    """``(key, size, last modified)`` of every object directly under ``prefix`` (one request per 1000)."""
    paginator = _client(storage).get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=storage.bucket_name, Prefix=prefix, Delimiter="/"):
        for item in page.get("Contents", []):
            yield item["Key"], int(item["Size"]), item["LastModified"]


def download(storage: Any, key: str, out: BinaryIO, *, progress: Callable[[int, int], None] | None = None) -> None:
    """boto3's managed (parallel, ranged) download into ``out``, a seekable file each part is written in place."""
    size = _client(storage).head_object(Bucket=storage.bucket_name, Key=key)["ContentLength"]
    storage.bucket.Object(key).download_fileobj(out, Config=storage.transfer_config,
                                                Callback=_Counter(int(size), progress))


def open_stream(storage: Any, key: str) -> BinaryIO:
    """The object's body as a buffered stream, read as it arrives (constant memory)."""
    body = _client(storage).get_object(Bucket=storage.bucket_name, Key=key)["Body"]
    return io.BufferedReader(_Body(body), buffer_size=CHUNK)


class _Body(io.RawIOBase):
    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def open_ranged(storage: Any, key: str) -> BinaryIO:
    """A seekable reader of the object that fetches only what is read (a ranged GET per buffer refill)."""
    size = int(_client(storage).head_object(Bucket=storage.bucket_name, Key=key)["ContentLength"])
    return io.BufferedReader(_Ranged(storage, key, size), buffer_size=CHUNK)


class _Ranged(SeekableReader):
    def __init__(self, storage: Any, key: str, size: int) -> None:
        super().__init__(size)
        self._storage, self._key = storage, key

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        end = min(self.size, self._pos + len(view))
        if end <= self._pos:
            return 0
        body = _client(self._storage).get_object(Bucket=self._storage.bucket_name, Key=self._key,
                                                 Range=f"bytes={self._pos}-{end - 1}")["Body"]
        data = body.read()
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def abort_uploads(storage: Any, prefix: str, *, key: str | None = None, before: datetime | None = None) -> list[str]:
    """Abort incomplete multipart uploads under ``prefix`` (of ``key`` only, or started before ``before``)."""
    client = _client(storage)
    aborted = []
    paginator = client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=storage.bucket_name, Prefix=key or prefix):
        for upload_ in page.get("Uploads", []):
            if key is not None and upload_["Key"] != key:
                continue
            if before is not None and upload_["Initiated"] >= before:
                continue
            client.abort_multipart_upload(Bucket=storage.bucket_name, Key=upload_["Key"],
                                          UploadId=upload_["UploadId"])
            aborted.append(upload_["Key"])
    return aborted


def describe_error(exc: BaseException) -> tuple[str, bool] | None:
    """``(one line, transient)`` for boto3/botocore errors (searching the cause chain), else None."""
    try:
        from botocore import exceptions as bx
    except ImportError:
        return None
    seen = exc
    while seen is not None:
        if isinstance(seen, bx.ClientError):
            error = seen.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            bucket = error.get("BucketName")
            if code == "NoSuchBucket":
                return f"the bucket{f' {bucket!r}' if bucket else ''} does not exist (NoSuchBucket)", False
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
                return (f"access denied ({code or status}): check the storage's credentials and the bucket's "
                        "policy", False)
            return f"{code or status}: {error.get('Message') or seen}", status >= 500 or code in ("SlowDown",
                                                                                                  "RequestTimeout")
        if isinstance(seen, bx.NoCredentialsError):
            return ("no credentials: set them in the storage's settings or the environment "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile or an instance role)", False)
        if isinstance(seen, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
            return f"the endpoint is unreachable ({seen})", True
        if isinstance(seen, (bx.ConnectionClosedError, bx.ReadTimeoutError, bx.ResponseStreamingError)):
            return f"the connection broke ({type(seen).__name__})", True
        if isinstance(seen, bx.BotoCoreError):
            return f"{type(seen).__name__}: {seen}", False
        seen = seen.__cause__ or seen.__context__
    return None
