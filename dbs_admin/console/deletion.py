"""Deleting backups: the files on every target first, then the row; every deletion audited."""

from __future__ import annotations

from django.http import HttpRequest

from dbs_admin.console import audit
from dbs_admin.models import AuditEvent, Backup
from dbs_admin.targets import get_target


def delete_backup(request: HttpRequest | None, backup: Backup) -> bool:
    """Remove every copy, then the row. If a copy cannot be removed the row stays (so nothing is orphaned)."""
    from dbs_admin.targets.errors import StoredFileMissingError

    failures = []
    for copy in list(backup.copies.all()):
        if copy.state == copy.State.FAILED:  # never stored: nothing to remove
            copy.delete()
            continue
        try:
            get_target(copy.target).delete(backup.name)
        except StoredFileMissingError:
            pass  # already gone: nothing left to remove
        except Exception as exc:
            failures.append(f"{copy.target}: {exc}")
            continue
        copy.delete()
    if failures:
        audit.record(request, "delete", backup=backup, outcome=AuditEvent.Outcome.FAILED, detail="; ".join(failures))
        return False
    name = backup.name
    backup.delete()
    audit.record(request, "delete", object_repr=name, detail="files removed from every target")
    return True


def delete_backups(request: HttpRequest | None, queryset) -> int:
    return sum(delete_backup(request, b) for b in list(queryset))
