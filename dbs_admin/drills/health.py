"""Is the site recoverable right now? One answer for the system check, ``dbs_status`` and the status view.

Three states, because a new install is not a broken one:

* **failing** (``dbs_status`` exits 1, the status view answers 503): the
  newest verified backup is older than ``DBS_ADMIN["RPO"]``, backups were
  attempted and none is verified, or the last finished restore drill failed.
* **not configured** (a warning; exit 0, 200): what unattended operation
  still needs: no backup made yet, no ``RECIPIENTS`` (scheduled backups
  cannot be sealed), no ``DRILL_IDENTITY`` (the weekly drill cannot open
  them). Monitors must not page anyone for a site that was installed an
  hour ago; the console and ``manage.py check`` say what to set up.
* **healthy**: neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from dbs_admin.backups.sealing_keys import can_seal_without_passphrase
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.identity import drill_identity_configured
from dbs_admin.drills.report import failed_checks, latest_drill
from dbs_admin.models import Backup, Job

HEALTHY, NOT_CONFIGURED, FAILING = "healthy", "not_configured", "failing"
SETUP_HINT = "`manage.py dbs_keys init` sets up both keys in one step"
SETUP_LINE = "Unattended backups and drills: " + SETUP_HINT + " and prints the settings to add."
NO_RECIPIENTS = ("DBS_ADMIN['RECIPIENTS'] is empty, so scheduled backups cannot be sealed (no passphrase is stored "
                 "anywhere)")
NO_DRILL_IDENTITY = "DBS_ADMIN['DRILL_IDENTITY'] is not set, so the weekly restore drill cannot open backups"


def rpo() -> timedelta:
    value = dbs_settings.RPO
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def newest_verified_backup() -> Backup | None:
    return (
        Backup.objects.filter(status__in=[Backup.Status.OK, Backup.Status.HEALED])
        .order_by("-created_at", "-pk")
        .first()
    )


def unattended_gaps() -> list[tuple[str, str]]:
    """``(code, sentence)`` of what scheduled backups and drills still need; empty when both can run."""
    gaps = []
    if not can_seal_without_passphrase():
        gaps.append(("no_recipients", NO_RECIPIENTS))
    if not drill_identity_configured():
        gaps.append(("no_drill_identity", NO_DRILL_IDENTITY))
    return gaps


def setup_sentence() -> str | None:
    """What is missing for unattended operation, in one sentence (Schedules page, dashboard), or None."""
    gaps = unattended_gaps()
    if not gaps:
        return None
    codes = {code for code, _ in gaps}
    if codes == {"no_recipients", "no_drill_identity"}:
        return ("The daily backup and the weekly drill are off until DBS_ADMIN has RECIPIENTS (public keys that "
                f"seal unattended backups) and a DRILL_IDENTITY (the key drills open them with): {SETUP_HINT}.")
    if "no_recipients" in codes:
        return (f"The daily backup is off: {NO_RECIPIENTS}. Add a recipient key to DBS_ADMIN['RECIPIENTS'] "
                "(`manage.py dbs_keys init` makes one).")
    return (f"The weekly drill is off: {NO_DRILL_IDENTITY}. Set DRILL_IDENTITY to the identity of one of the "
            "RECIPIENTS (`manage.py dbs_keys init` makes one); Run drill asks for a key meanwhile.")


@dataclass
class Health:
    healthy: bool  # nothing is failing (a site that is only not configured yet is healthy)
    problems: list[str] = field(default_factory=list)  # failing: "backup_too_old", "backup_failing", "drill_failed"
    codes: list[str] = field(default_factory=list)
    state: str = HEALTHY
    warnings: list[str] = field(default_factory=list)  # not configured: "backup_missing", "no_recipients", ...
    warning_codes: list[str] = field(default_factory=list)
    checked_at: datetime | None = None
    rpo_seconds: float = 0.0
    newest_backup: dict[str, Any] | None = None
    last_drill: dict[str, Any] | None = None

    def add(self, code: str, problem: str) -> None:
        """Something is failing."""
        self.codes.append(code)
        self.problems.append(problem)

    def warn(self, code: str, warning: str) -> None:
        """Something is not configured yet."""
        self.warning_codes.append(code)
        self.warnings.append(warning)

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
    if backup is None and _backups_attempted():
        health.add("backup_failing", "Backups were attempted but none is verified: see the Jobs page of the "
                   "Backups console, or run `manage.py dbs_backup` to see why.")
    elif backup is None:
        health.warn("backup_missing", "No backup yet: run `manage.py dbs_backup`, Back up now, or enable the "
                    "daily backup on the Schedules page.")
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

    for code, sentence in unattended_gaps():
        health.warn(code, f"{sentence}.")
    health.healthy = not health.problems
    health.state = FAILING if health.problems else NOT_CONFIGURED if health.warnings else HEALTHY
    return health


def _backups_attempted() -> bool:
    """A backup exists but is not verified, or a backup job failed: the backups are failing, not missing."""
    failed = (Job.State.FAILED, Job.State.LOST)
    return Backup.objects.exists() or Job.objects.filter(kind=Job.Kind.BACKUP, state__in=failed).exists()
