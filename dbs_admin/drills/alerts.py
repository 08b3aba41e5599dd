"""Tell the site's ADMINS when a drill fails: a backup that does not restore is an emergency."""

from __future__ import annotations

from dbs_admin.models import DrillReport
from dbs_admin.notify import mail_admins_or_log


def failure_message(report: DrillReport) -> tuple[str, str]:
    failed = [c for c in report.checks.all() if not c.passed]
    names = ", ".join(c.name for c in failed) or "the drill could not run"
    subject = f"Drill #{report.pk} FAILED ({names}): {report.backup_name}"
    lines = [
        f"The restore drill of {report.backup_name} failed.",
        f"Started {report.started_at:%Y-%m-%d %H:%M:%S %Z}, engine {report.engine or '?'}.",
        "",
    ]
    for check in report.checks.all():
        lines.append(f"[{'PASS' if check.passed else 'FAIL'}] {check.name} ({check.seconds:.2f} s)")
        if not check.passed and check.detail:
            lines.extend(f"    {line}" for line in check.detail.splitlines()[:30])
    if report.error:
        lines += ["", "Error:", report.error]
    lines += ["", "Until a drill passes, the backups may not restore. See the Drills page of the Backups console."]
    return subject, "\n".join(lines)


def alert_failure(report: DrillReport) -> bool:
    """Mail ADMINS; a broken mail set-up is logged, never allowed to hide the recorded report."""
    subject, body = failure_message(report)
    return mail_admins_or_log(subject, body, about=f"failed drill {report.pk}")
