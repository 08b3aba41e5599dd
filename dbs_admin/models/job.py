"""A unit of background work (backup, restore, validate, drill, prune, export) and its progress."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Job(models.Model):
    class Kind(models.TextChoices):
        BACKUP = "backup", "Backup"
        RESTORE = "restore", "Restore"
        VALIDATE = "validate", "Validate"
        DRILL = "drill", "Restore drill"
        PRUNE = "prune", "Prune"
        EXPORT = "export", "Export for download"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        LOST = "lost", "Failed (worker lost)"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from the worker.")
    stage = models.CharField(max_length=100, blank=True)
    progress = models.FloatField(default=0.0, help_text="0.0 to 1.0")
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="Non-secret parameters (target, kind, label).")
    backup = models.ForeignKey(
        "dbs_admin.Backup", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    celery_task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    cancel_requested = models.BooleanField(default=False)
    partial_files = models.JSONField(default=list, blank=True, help_text="Files to remove if the job dies.")
    # What was sent to the broker (task name and non-secret arguments: a hand-off is only referenced), so the
    # reaper can send a queued job again when its message went with a dead worker or a broker restart.
    dispatch = models.JSONField(default=dict, blank=True, help_text="Task name and arguments sent (no secrets).")
    resends = models.PositiveSmallIntegerField(default=0, help_text="Times the reaper sent this queued job again.")
    touched_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign that a queued job is alive (sent again, or waiting its turn).")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        """"Job #5 · Restore drill": jobs are numbered one way everywhere (drill reports are "Drill #N"),
        and the title says no state, so a page loaded while the job was queued never keeps saying so."""
        return f"Job #{self.pk} · {self.get_kind_display()}"

    @property
    def finished(self) -> bool:
        return self.state in {self.State.SUCCEEDED, self.State.FAILED, self.State.CANCELLED, self.State.LOST}


class ScheduleTick(models.Model):
    """One due time of one schedule, claimed once: beats that fire it twice make one Job, not two.

    Why a row: a second beat (a deploy that starts one more) or a re-delivered
    message fires the same tick again; inserting this row is atomic on every
    database, so exactly one of them goes on to create the Job.
    """

    schedule = models.CharField(max_length=200, help_text="The PeriodicTask's name.")
    due_at = models.DateTimeField(help_text="The tick's due time (the schedule's own, not the beat's clock).")
    claimed_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=255, blank=True, help_text="Worker (host) that claimed it.")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "due_at"], name="dbs_scheduletick_once")]
        ordering = ["-due_at"]

    def __str__(self) -> str:
        return f"{self.schedule} at {self.due_at:%Y-%m-%d %H:%M}"


class WorkerHost(models.Model):
    """A host that runs workers, and what it holds on its own disk (so per-host state is never silent)."""

    name = models.CharField(max_length=255, primary_key=True, help_text="DBS_ADMIN['HOST_NAME'] of the worker.")
    seen_at = models.DateTimeField(default=timezone.now)
    local_targets = models.JSONField(default=dict, blank=True, help_text="Local targets: name → folder.")
    history_root = models.CharField(max_length=1024, blank=True)
    shared = models.JSONField(default=list, blank=True, help_text="Local targets this host declares shared.")

    def __str__(self) -> str:
        return self.name
