"""A sealed backup file and the places its copies live."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Backup(models.Model):
    """One sealed ``.dbs`` file, identified by its file name across all targets."""

    class Kind(models.TextChoices):
        LOGICAL = "logical", "Logical (rows, relations, files)"
        NATIVE = "native", "Native (engine dump + files)"

    class Status(models.TextChoices):
        OK = "ok", "Intact"
        HEALED = "healed", "Damaged, healed"
        DAMAGED = "damaged", "Damaged beyond repair"
        UNVERIFIED = "unverified", "Not verified"

    name = models.CharField(max_length=255, unique=True, help_text="File name, the same on every target.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.LOGICAL)
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    engine = models.CharField(max_length=40, blank=True, help_text="Database vendor the backup was taken from.")
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    key_slots = models.JSONField(
        default=list, blank=True, help_text="Public description of the key slots (kinds, fingerprints); no secrets."
    )
    manifest = models.JSONField(default=dict, blank=True, help_text="Summary: row counts, files, migrations.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNVERIFIED)
    verified_at = models.DateTimeField(null=True, blank=True)
    healed_blocks = models.PositiveIntegerField(default=0)
    healing_margin = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return self.name


class BackupCopy(models.Model):
    """Where one target holds a copy of a backup, or why the copy meant for it failed.

    A backup written to several targets has a row per target; each copy is
    published and verified on its own, so one target failing fails its row
    (``state`` FAILED, the reason in ``detail``), not the others.
    """

    class State(models.TextChoices):
        STORED = "stored", "Stored and verified"
        FAILED = "failed", "Failed"

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="copies")
    target = models.CharField(max_length=100)
    path = models.CharField(max_length=1024, help_text="Location inside the target.")
    stored_at = models.DateTimeField(default=timezone.now)
    verified_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.STORED)
    detail = models.CharField(max_length=500, blank=True, help_text="Why the copy failed, or how it was verified.")
    host = models.CharField(
        max_length=255, blank=True,
        help_text="Host whose own disk holds the copy (a per-host local target); blank when any host reaches it.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["backup", "target"], name="dbs_backupcopy_one_per_target")]

    def __str__(self) -> str:
        return f"{self.backup.name} on {self.target}"
