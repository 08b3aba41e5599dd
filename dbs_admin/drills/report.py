"""Recording a drill: the report row, one row per check, the verdict.

Each check is written as soon as it has run, so a drill that dies part-way
still shows how far it got (and the console can show a running drill).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from dbs_admin.models import Backup, DrillCheck, DrillReport, Job


def start_report(*, backup_name: str, backup: Backup | None = None, job: Job | None = None,
                 engine: str = "", smoke_seed: int | None = None, smoke_full: bool = False) -> DrillReport:
    return DrillReport.objects.create(
        backup_name=backup_name, backup=backup, job=job, engine=engine, started_at=timezone.now(),
        smoke_seed=smoke_seed, smoke_full=smoke_full,
    )


def record_check(report: DrillReport, name: str, passed: bool, detail: str = "", seconds: float = 0.0, *,
                 sample: dict[str, Any] | None = None) -> DrillCheck:
    """One step or check, written at once; ``sample``: what a smoke check sampled (seed, pks)."""
    order = report.checks.count()
    return DrillCheck.objects.create(
        report=report, order=order, name=name, passed=passed, detail=detail[:20000], seconds=round(seconds, 4),
        sample=sample or {},
    )


def finish_report(report: DrillReport, *, error: str = "", total_seconds: float | None = None) -> DrillReport:
    """The verdict: passed only when at least one check ran, every check passed and nothing raised.

    ``total_seconds``: the whole drill as measured by its runner (scratch set-up and clean-up included).
    """
    checks = list(report.checks.all())
    report.passed = bool(checks) and all(c.passed for c in checks) and not error
    report.error = error[:20000]
    report.finished_at = timezone.now()
    if total_seconds is None:
        total_seconds = (report.finished_at - report.started_at).total_seconds()
    report.total_seconds = round(max(0.0, total_seconds), 3)
    report.save(update_fields=["passed", "error", "finished_at", "total_seconds"])
    return report


def mark_interrupted(drill_ids: Iterable[int], *, by: DrillReport) -> int:
    """Reports of drills whose process died stay "running" for ever; close them as failed."""
    return DrillReport.objects.filter(pk__in=list(drill_ids), passed__isnull=True).update(
        passed=False,
        finished_at=timezone.now(),
        error=f"Interrupted: the drill's process died; drill #{by.pk} removed its scratch database.",
    )


def failed_checks(report: DrillReport) -> list[DrillCheck]:
    return [c for c in report.checks.all() if not c.passed]


def latest_drill(*, finished: bool = True) -> DrillReport | None:
    """The newest drill (by default the newest that finished), for the dashboard and health."""
    qs = DrillReport.objects.all()
    if finished:
        qs = qs.filter(passed__isnull=False)
    return qs.prefetch_related("checks").order_by("-started_at", "-pk").first()


# The steps whose time is the RTO: getting a readable file (``fetch`` from a target, or ``export`` of a
# repository snapshot), building the schema, restoring rows and files.
RTO_STEPS = ("fetch", "export", "schema", "restore")
EXPORT_STEP = "export"
EXPORT_CAVEAT = ("it reads every chunk of the snapshot, as a restore straight from the repository does, and also "
                 "seals a standalone file, which such a restore does not: for that restore, this RTO is an upper "
                 "bound")


def rto_breakdown(report: DrillReport) -> str:
    """What the RTO is made of, step by step ("export 1.2 s + schema 0.3 s + restore 2.0 s")."""
    times = {c.name: c.seconds for c in report.checks.all() if c.name in RTO_STEPS}
    return " + ".join(f"{name} {times[name]:.1f} s" for name in RTO_STEPS if name in times)


def rto_words(report: DrillReport) -> str:
    """The RTO with what it measured, in one sentence's worth: the breakdown, and what a snapshot's export adds."""
    if report.restore_seconds is None:
        return ""
    words = f"{report.restore_seconds:.1f} s ({rto_breakdown(report)})"
    if any(c.name == EXPORT_STEP for c in report.checks.all()):
        words += f"; the RTO counts the snapshot's export: {EXPORT_CAVEAT}"
    return words
