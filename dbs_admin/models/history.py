"""The index of the per-object history tree: one row per stored version.

The tree on disk is the source of truth; this table only makes the admin's
history, compare and "recover deleted" pages fast, and can be rebuilt from
the tree (``dbs_history reindex``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class HistoryVersion(models.Model):
    model_label = models.CharField(max_length=200, help_text='"app_label.model_name", lower case.')
    object_key = models.CharField(max_length=255, help_text="Folder name of the object (slug or pk).")
    object_pk = models.CharField(max_length=64, blank=True, help_text="Primary key at snapshot time.")
    version_id = models.CharField(max_length=100, help_text='"initial" or "update_<UTC timestamp>".')
    path = models.CharField(max_length=1024, help_text="Folder of this version, relative to the history root.")
    created_at = models.DateTimeField(db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    title = models.CharField(max_length=300, blank=True, help_text="The object's str() at snapshot time.")
    summary = models.JSONField(default=dict, blank=True, help_text="What changed: fields, tags +/-, images +/-.")
    object_deleted = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["model_label", "object_key", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_label", "object_key", "version_id"], name="dbs_historyversion_unique"
            )
        ]
        indexes = [
            models.Index(fields=["model_label", "object_key", "-created_at"], name="dbs_hist_obj_recent"),
            # "does this object have a version yet?", asked before the first tracked save of each object
            models.Index(fields=["model_label", "object_pk"], name="dbs_hist_obj_pk"),
        ]

    def __str__(self) -> str:
        return f"{self.model_label}/{self.object_key}@{self.version_id}"


class HistoryTick(models.Model):
    """The source of version order keys: one id per tracked change, taken inside the saving transaction.

    Why a table: the key must come from the database, not a host's clock, and be taken while the
    saving transaction holds the object's row, so concurrent saves of one object are numbered in
    commit order on every host. PostgreSQL draws ``nextval`` of this table's sequence (no row is
    written); other engines insert a row and delete it again (SQLite's AUTOINCREMENT never reuses an
    id). See ``history.ordering``.
    """

    id = models.BigAutoField(primary_key=True)

    class Meta:
        verbose_name = "history order tick"

    def __str__(self) -> str:
        return f"tick {self.pk}"
