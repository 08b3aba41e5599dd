"""The result of one restore drill and each check it ran."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DrillReport(models.Model):
    backup = models.ForeignKey(
        "dbs_admin.Backup", null=True, blank=True, on_delete=models.SET_NULL, related_name="drills"
    )
    backup_name = models.CharField(max_length=255, help_text="Kept when the Backup row is pruned.")
    job = models.ForeignKey("dbs_admin.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    passed = models.BooleanField(null=True, help_text="None while running.")
    engine = models.CharField(max_length=40, blank=True)
    scratch_database = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="Worker (host) that ran the drill.")
    restore_seconds = models.FloatField(null=True, blank=True, help_text="Measured RTO.")
    backup_age_seconds = models.FloatField(null=True, blank=True, help_text="RPO at drill time.")
    total_seconds = models.FloatField(null=True, blank=True, help_text="The whole drill, start to finish.")
    smoke_seed = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seed of the smoke checks' samples (dbs_drill --smoke-seed reproduces them)."
    )
    smoke_full = models.BooleanField(default=False, help_text="Smoke checks ran over every object.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = "running" if self.passed is None else ("passed" if self.passed else "failed")
        return f"Drill #{self.pk} of {self.backup_name}: {state}"


class DrillCheck(models.Model):
    report = models.ForeignKey(DrillReport, on_delete=models.CASCADE, related_name="checks")
    order = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=200)
    passed = models.BooleanField()
    detail = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0)
    sample = models.JSONField(
        default=dict, blank=True, help_text="Smoke checks: the seed, and the objects sampled and checked (pks)."
    )

    class Meta:
        ordering = ["report", "order"]

    def __str__(self) -> str:
        return f"{self.name}: {'passed' if self.passed else 'failed'}"
