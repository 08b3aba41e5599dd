"""The console's record of each backup made: a ``Backup`` row and one ``BackupCopy`` per place it lives.

Why separate: recording is the only database write of a backup, always to
the console's own database (``default``), whatever database was backed up.
Nothing secret is stored: key slots are described by kind and fingerprint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from dbs_admin.backups.host_disks import copy_host
from dbs_admin.models import Backup, BackupCopy

LISTS_KEPT_IN_THE_FILE = ("file_sha256",)
REPOSITORIES = "repositories"  # the manifest's key for its snapshots' figures (``create.REPOSITORIES``, the same)


def record_backup(
    *, name: str, kind: str, label: str, created_at: datetime, user: Any, engine: str, size: int, sha256: str,
    key_slots: list[dict], manifest: dict, copies: list[tuple[str, str]], failed: dict[str, str] | None = None,
) -> Backup:
    """Create the Backup row (verified now), its copies ``(target name, location)`` and the copies that failed
    (``{target name: why}``), so the record lists every copy that was meant to exist.

    The row keeps the manifest without its per-file hash list, which can run to
    many megabytes on a large media folder; the sealed file holds it.
    """
    now = timezone.now()
    manifest = {k: v for k, v in manifest.items() if k not in LISTS_KEPT_IN_THE_FILE}
    rows = [BackupCopy(backup=None, target=t, path=p, stored_at=now, verified_at=now, host=copy_host(t))
            for t, p in copies]
    rows += [BackupCopy(backup=None, target=t, path=name, stored_at=now, state=BackupCopy.State.FAILED,
                        detail=why[:500]) for t, why in (failed or {}).items()]
    with transaction.atomic():
        backup = Backup.objects.create(
            name=name, kind=kind, label=label[:200], created_at=created_at,
            created_by=user if getattr(user, "pk", None) else None, engine=engine, size=size, sha256=sha256,
            key_slots=key_slots, manifest=manifest, status=Backup.Status.OK, verified_at=now,
            healed_blocks=0, healing_margin=1.0,
        )
        for row in rows:
            row.backup = backup
        BackupCopy.objects.bulk_create(rows)
    return backup


def stored_copies(backup: Backup):
    """The copies that were stored and verified (not those that failed), the preferred target first."""
    return backup.copies.filter(state=BackupCopy.State.STORED).order_by("target")


def describe_what_remains(backup: Backup, gone: str) -> None:
    """After the copy on target ``gone`` was deleted, make the row describe the copies that remain.

    Why: one capture can be teed to a sealed file and a repository snapshot (``--target repo --target
    offsite``); its row then lists the file's size and hash beside what the snapshot added. Once retention
    deletes the file, the row would go on showing a file size no copy has; once it deletes the snapshot, a
    repository cost no repository bears. So the snapshot's figures go with its copy, and a backup left with
    snapshots only becomes what a snapshot-only backup's row is: its size what the snapshots added, no file hash.
    """
    figures = dict((backup.manifest or {}).get(REPOSITORIES) or {})
    if not figures:
        return  # a sealed file alone: nothing in the row describes one copy rather than another
    figures.pop(gone, None)
    manifest = {k: v for k, v in backup.manifest.items() if k != REPOSITORIES}
    if figures:
        manifest[REPOSITORIES] = figures
    fields: dict[str, Any] = {"manifest": manifest}
    remaining = set(stored_copies(backup).values_list("target", flat=True))
    if figures and remaining and remaining <= set(figures):  # no sealed file left anywhere
        fields.update(size=sum(int(f.get("added") or 0) for f in figures.values()), sha256="")
    Backup.objects.filter(pk=backup.pk).update(**fields)
