"""Hand a passphrase from the web process to one Celery worker without exposing it.

Why: a Celery message sits in the broker (Redis keys, or files of the
filesystem transport), may be logged by the worker, and task arguments end up
in result backends and monitoring tools. A passphrase put there is a
passphrase leaked. So the web process seals it and the task carries only a
random reference id.

How:
- A fresh 32-byte salt and a 96-bit nonce per secret; the key is
  HKDF-SHA256(SECRET_KEY, salt, info="dbs_admin handoff v1"); the secret is
  encrypted with AES-256-GCM, the reference id and purpose bound as
  associated data (a ciphertext cannot be replayed under another id or for
  another purpose).
- Only ``salt || nonce || ciphertext`` is stored, in :class:`HandoffSecret`,
  with an expiry of minutes. :func:`take` deletes the row in the same
  call that reads it (only one caller can delete it): a secret is used at most once.
- Expired rows are deleted by :func:`purge_expired` (the reaper calls it).
- How long "minutes" is: at least ``DEFAULT_TTL``, and long enough for the reaper to notice a lost
  message (``JOB_QUEUE_TIMEOUT``) and send it again: when it does, it extends a hand-off that has not
  expired by the same span (:func:`extend`). Before, both were five minutes, so a passphrase job whose
  message was lost was re-sent just as its hand-off expired, and failed with "enter it again".

Threat model:
- Someone who reads the broker, the worker log, a result backend or a
  database dump *alone* learns nothing: ids are random, rows are ciphertext.
- Someone holding both SECRET_KEY and a database copy taken within the few
  minutes before the worker consumed the row could decrypt it; the short TTL
  and delete-on-read keep that window small. SECRET_KEY is already the key to
  every session of the site, so this adds no new secret to protect.
- A worker that never runs (killed, queue lost) leaves a row that expires.
- Rotating SECRET_KEY invalidates pending hand-offs (the job fails with a
  clear "enter the passphrase again" message), never decrypts them wrongly.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.utils import timezone

from dbs_admin.conf import dbs_settings
from dbs_admin.models import HandoffSecret

DEFAULT_TTL = timedelta(minutes=5)
RESEND_MARGIN = timedelta(minutes=2)  # beyond JOB_QUEUE_TIMEOUT: the reaper's own period and a worker's start
# What a hand-off is for (bound into its encryption: one sealed for a backup cannot open a restore).
BACKUP_PURPOSE, RESTORE_PURPOSE, VALIDATE_PURPOSE, DRILL_PURPOSE = "backup", "restore", "validate", "drill"
EXPORT_PURPOSE = "export"
_INFO = b"dbs_admin handoff v1"
_SALT, _NONCE = 32, 12


class HandoffError(Exception):
    """The sealed secret is gone (expired, already used) or cannot be opened."""


def _key(salt: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
    return hkdf.derive(settings.SECRET_KEY.encode())


def _aad(ref: str, purpose: str) -> bytes:
    return f"{ref}\x00{purpose}".encode()


def queue_ttl() -> timedelta:
    """How long a hand-off waits for its worker: DEFAULT_TTL, or a lost message's detection and re-sending."""
    return max(DEFAULT_TTL, timedelta(seconds=int(dbs_settings.JOB_QUEUE_TIMEOUT)) + RESEND_MARGIN)


def put(secret: str, *, purpose: str, ttl: timedelta | None = None) -> str:
    """Seal ``secret`` and return the reference id to put in a task message (kept for ``queue_ttl()``)."""
    ttl = queue_ttl() if ttl is None else ttl
    ref = secrets.token_urlsafe(24)
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    sealed = AESGCM(_key(salt)).encrypt(nonce, secret.encode(), _aad(ref, purpose))
    HandoffSecret.objects.create(
        id=ref, purpose=purpose, ciphertext=salt + nonce + sealed, expires_at=timezone.now() + ttl
    )
    return ref


def take(ref: str, *, purpose: str) -> str:
    """Return the secret behind ``ref`` and delete it; HandoffError when missing, expired or forged."""
    # Read, then delete: whoever deletes the row (count 1) is its one user. No read-then-write
    # transaction on purpose: on SQLite (WAL) such a transaction fails at once with "database is
    # locked" when another connection (the job's heartbeat) wrote in between.
    row = HandoffSecret.objects.filter(id=ref, purpose=purpose).first()
    if row is None or HandoffSecret.objects.filter(id=ref).delete()[0] != 1:
        raise HandoffError("The passphrase hand-off was already used or has expired; enter the passphrase again.")
    if row.expires_at < timezone.now():
        raise HandoffError("The passphrase hand-off has expired; enter the passphrase again.")
    blob = bytes(row.ciphertext)
    salt, nonce, sealed = blob[:_SALT], blob[_SALT : _SALT + _NONCE], blob[_SALT + _NONCE :]
    try:
        return AESGCM(_key(salt)).decrypt(nonce, sealed, _aad(ref, purpose)).decode()
    except InvalidTag:
        raise HandoffError("The passphrase hand-off cannot be opened (SECRET_KEY changed?); enter it again.") from None


def extend(ref: str | None) -> bool:
    """Give a hand-off that has not expired another ``queue_ttl()``: its job's message is being sent again.
    An expired one stays expired (its job then asks for the passphrase again)."""
    if not ref:
        return False
    now = timezone.now()
    return bool(HandoffSecret.objects.filter(id=ref, expires_at__gte=now).update(expires_at=now + queue_ttl()))


def discard(ref: str | None) -> None:
    """Delete a hand-off nobody will use (job cancelled before it started)."""
    if ref:
        HandoffSecret.objects.filter(id=ref).delete()


def purge_expired() -> int:
    return HandoffSecret.objects.filter(expires_at__lt=timezone.now()).delete()[0]


def put_key(*, passphrase: str, identity_file: str | None, purpose: str, ttl: timedelta | None = None) -> str:
    """Seal what opens a backup: a passphrase, or an identity file's text and the passphrase that unlocks it."""
    return put(json.dumps({"passphrase": passphrase, "identity_file": identity_file}), purpose=purpose, ttl=ttl)


def take_key(ref: str, *, purpose: str) -> tuple[str, str | None]:
    """``(passphrase, identity file text or None)`` sealed by :func:`put_key`; deleted on reading."""
    data = json.loads(take(ref, purpose=purpose))
    return data["passphrase"], data.get("identity_file")
