"""Receiving an uploaded ``.dbs`` for a restore: streamed to a private folder, size-capped, magic-checked.

Why a handler of our own: Django's default handlers keep small uploads in
memory and larger ones in the system temp folder, and only learn the size
after the whole body was read. This handler writes each chunk straight to
``PRIVATE_ROOT/uploads`` (never MEDIA_ROOT), refuses a body announced larger
than ``UPLOAD_MAX_BYTES`` before reading it, stops the moment the limit is
crossed, and refuses a file whose first bytes are not the sealed magic
before writing anything else. Whatever it refuses it deletes.

Where uploads wait for their job, and how abandoned ones go, is
:mod:`dbs_admin.jobs.uploads`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers, StopUpload

from dbs_admin.conf import dbs_settings
from dbs_admin.jobs.uploads import upload_dir
from dbs_admin.sealed.layout import MAGIC

FIELD = "upload"
IDENTITY_FIELD = "identity"
IDENTITY_MAX_BYTES = 64 * 1024  # an identity file is a few hundred bytes


def too_large_message(limit: int) -> str:
    return f"The file is larger than the upload limit of {limit:,} bytes (DBS_ADMIN['UPLOAD_MAX_BYTES'])."


FOREIGN_MESSAGE = "This is not a dbs_admin backup (.dbs): its first bytes are not the sealed-file signature."


class SealedUploadHandler(FileUploadHandler):
    """Stream the ``upload`` field to disk; record a refusal in ``self.error`` instead of raising to the user."""

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.limit = int(dbs_settings.UPLOAD_MAX_BYTES)
        self.error: str | None = None
        self.path: Path | None = None
        self._file = None
        self._size = 0
        self._head = b""
        self._field: str | None = None
        self.identity: bytes | None = None  # an identity file (small, itself encrypted): kept in memory

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # Multipart overhead is small; a body far over the limit is refused unread.
        if content_length and content_length > self.limit + 64 * 1024:
            self.error = too_large_message(self.limit)
        return None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self._field = field_name
        if field_name == IDENTITY_FIELD and not self.error:
            self.identity = b""
            raise StopFutureHandlers
        if field_name != FIELD or self.error:
            return  # let other handlers (none by default) deal with other fields
        self.path = upload_dir() / f"{secrets.token_hex(16)}.dbs.part"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        raise StopFutureHandlers

    def _abort(self, message: str) -> None:
        self.error = message
        self.discard()
        raise StopUpload(connection_reset=False)

    def receive_data_chunk(self, raw_data: bytes, start: int):
        if self.error:
            raise StopUpload(connection_reset=False)
        if self._field == IDENTITY_FIELD:
            self.identity += raw_data
            if len(self.identity) > IDENTITY_MAX_BYTES:
                self.identity = None
                self._abort("That identity file is far too large to be a dbs_admin identity.")
            return None
        if self._file is None:
            return raw_data
        self._size += len(raw_data)
        if self._size > self.limit:
            self._abort(too_large_message(self.limit))
        if len(self._head) < len(MAGIC):
            self._head += raw_data[: len(MAGIC) - len(self._head)]
            if not MAGIC.startswith(self._head):
                self._abort(FOREIGN_MESSAGE)
        self._file.write(raw_data)
        return None

    def file_complete(self, file_size: int):
        if self._field == IDENTITY_FIELD:
            return None  # read from ``self.identity``, never written to disk by this handler
        if self._file is None:
            return None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._size < len(MAGIC) or self._head != MAGIC:
            self.error = FOREIGN_MESSAGE
            self.discard()
            return None
        final = self.path.with_suffix("")  # drop ".part": complete and checked
        os.replace(self.path, final)
        self.path = final
        return UploadedFile(file=None, name=self.file_name, size=self._size)

    def upload_interrupted(self):
        self.discard()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
