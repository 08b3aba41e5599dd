"""Retention after a scheduled backup, with the policy chosen on the Schedules page.

``backups.retention.prune(target)`` reads its policy from
``DBS_ADMIN["RETENTION"]`` only; the Schedules page stores a policy per
target in its PeriodicTask. So we plan with the public ``plan_retention``
(which never deletes the newest verified backup) and delete like ``prune``
does: the file on the target, its copy record, the Backup row once no copy
is left, each deletion audited.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone

from ..backups.retention import RetentionPlan, RetentionPolicy, plan_retention, prune
from ..models import AuditEvent, Backup, BackupCopy
from ..targets import get_target

VERIFIED = (Backup.Status.OK, Backup.Status.HEALED)


def prune_target(target_name: str, policy: Mapping[str, int] | None = None) -> RetentionPlan:
    """Apply ``policy`` (or the settings' policy when None) to one target."""
    if not policy:
        return prune(target_name)
    from ..targets.base import StoredFileMissingError

    checked = RetentionPolicy.from_mapping(policy, f"retention of target {target_name!r}")
    target = get_target(target_name)
    verified = set(Backup.objects.filter(status__in=VERIFIED).values_list("name", flat=True))
    plan = plan_retention(target.list(), checked, now=timezone.now(), verified_names=verified)
    for name in plan.delete:
        try:
            target.delete(name)
        except StoredFileMissingError:
            pass
        with transaction.atomic():
            backup = Backup.objects.filter(name=name).first()
            AuditEvent.objects.create(action="prune", backup=backup, object_repr=name[:300],
                                      detail=f"deleted from target {target_name!r} by retention "
                                             f"({checked.describe()})")
            if backup is not None:
                BackupCopy.objects.filter(backup=backup, target=target_name).delete()
                if not backup.copies.exists():
                    backup.delete()
    return plan
