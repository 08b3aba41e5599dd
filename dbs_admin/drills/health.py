"""Is the site recoverable right now? One answer for the system check, ``dbs_status`` and the status view.

Healthy means: a verified backup exists that is younger than
``DBS_ADMIN["RPO"]`` (we would lose less than the agreed amount of data), and
the last finished restore drill passed (the backups we take actually restore).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from dbs_admin.conf import dbs_settings
from dbs_admin.drills.report import failed_checks, latest_drill
from dbs_admin.models import Backup


def rpo() -> timedelta:
    value = dbs_settings.RPO
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def newest_verified_backup() -> Backup | None:
    return (
        Backup.objects.filter(status__in=[Backup.Status.OK, Backup.Status.HEALED])
        .order_by("-created_at", "-pk")
        .first()
    )


@dataclass
class Health:
    healthy: bool
    problems: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # "backup_missing", "backup_too_old", "drill_failed"
    checked_at: datetime | None = None
    rpo_seconds: float = 0.0
    newest_backup: dict[str, Any] | None = None
    last_drill: dict[str, Any] | None = None

    def add(self, code: str, problem: str) -> None:
        self.codes.append(code)
        self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))


def _describe_age(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.1f} days"


def health_status(now: datetime | None = None) -> Health:
    now = now or timezone.now()
    limit = rpo()
    health = Health(healthy=True, checked_at=now, rpo_seconds=limit.total_seconds())

    backup = newest_verified_backup()
    if backup is None:
        health.add("backup_missing", "No verified backup exists: run `manage.py dbs_backup` or schedule one.")
    else:
        age = (now - backup.created_at).total_seconds()
        health.newest_backup = {
            "name": backup.name, "kind": backup.kind, "created_at": backup.created_at,
            "age_seconds": round(age, 1), "status": backup.status,
        }
        if age > limit.total_seconds():
            health.add(
                "backup_too_old",
                f"The newest verified backup ({backup.name}) is {_describe_age(age)} old, "
                f"older than the RPO of {_describe_age(limit.total_seconds())}: check the scheduled backups."
            )

    drill = latest_drill()
    if drill is not None:
        failed = [c.name for c in failed_checks(drill)]
        health.last_drill = {
            "id": drill.pk, "backup_name": drill.backup_name, "passed": drill.passed,
            "started_at": drill.started_at, "finished_at": drill.finished_at,
            "restore_seconds": drill.restore_seconds, "total_seconds": drill.total_seconds,
            "backup_age_seconds": drill.backup_age_seconds,
            "failed_checks": failed, "error": drill.error,
        }
        if not drill.passed:
            if failed:
                what = "failed checks: " + ", ".join(failed)
            else:
                what = (drill.error.strip().splitlines() or ["no check ran"])[0]
            health.add("drill_failed", f"The last restore drill (#{drill.pk}, {drill.backup_name}) failed: {what}.")

    health.healthy = not health.problems
    return health
