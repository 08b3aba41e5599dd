"""Small records the console's background jobs need: sealed secret hand-offs and per-target locks."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class HandoffSecret(models.Model):
    """A secret (passphrase) on its way from the web process to one worker, encrypted.

    Only ciphertext is stored (AES-256-GCM under a key derived from
    SECRET_KEY, see ``dbs_admin.console.handoff``); the row expires within
    minutes and is deleted when the worker reads it.
    """

    id = models.CharField(primary_key=True, max_length=64)
    purpose = models.CharField(max_length=40)
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"sealed {self.purpose} secret (expires {self.expires_at:%H:%M:%S})"


class TargetLock(models.Model):
    """One row per target while a backup writes to it: the primary key makes taking it atomic.

    Works the same on SQLite and PostgreSQL, with any broker and any number of
    workers or (duplicated) beats; a lock whose job is lost is released by the reaper.
    """

    target = models.CharField(primary_key=True, max_length=100)
    job = models.ForeignKey("dbs_admin.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acquired_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"lock on {self.target} held by job {self.job_id}"
