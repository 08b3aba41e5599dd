"""The admin index entry of the console."""

from __future__ import annotations

from django.db import models


class Dashboard(models.Model):
    """A table-less model whose only purpose is an entry in the admin index.

    The Django admin lists apps through their registered models; this gives the
    "Backups" section a "Dashboard" link without overriding admin templates
    (which would fight with the host project's own overrides).
    """

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"

    def __str__(self) -> str:
        return "Backups dashboard"
