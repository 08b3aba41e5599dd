"""What the dashboard shows, computed in plain Python: RPO light, next runs, last jobs, newest drill, size chart.

The chart is inline SVG built here (a polyline per target), so the page
needs no JavaScript charting library and renders the same in any browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from dbs_admin.backups.host_disks import per_host_warnings
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.health import setup_sentence
from dbs_admin.drills.identity import drill_identity_configured
from dbs_admin.humanize import human_duration, human_size
from dbs_admin.jobs import schedules
from dbs_admin.jobs.reaper import reap_lost_jobs
from dbs_admin.models import Backup, BackupCopy, DrillReport, Job

VERIFIED = (Backup.Status.OK, Backup.Status.HEALED)
AMBER_FRACTION = 0.75
COLORS = ["#417690", "#c4701a", "#3b8a3e", "#9b3f9b", "#b23b3b", "#5a5a5a"]


@dataclass(frozen=True)
class RpoLight:
    color: str  # "green" | "amber" | "red"
    age: timedelta | None
    rpo: timedelta
    backup: Backup | None

    @property
    def text(self) -> str:
        if self.backup is None:
            return "No verified backup yet."
        return f"Newest verified backup is {human_duration(self.age)} old (RPO {human_duration(self.rpo)})."


def rpo_light(now=None) -> RpoLight:
    """Green while the newest verified backup is younger than 3/4 of the RPO, amber up to the RPO, red beyond."""
    now = now or timezone.now()
    rpo = dbs_settings.RPO if isinstance(dbs_settings.RPO, timedelta) else timedelta(seconds=dbs_settings.RPO)
    newest = Backup.objects.filter(status__in=VERIFIED).order_by("-created_at").first()
    if newest is None:
        return RpoLight("red", None, rpo, None)
    age = now - newest.created_at
    color = "green" if age <= rpo * AMBER_FRACTION else "amber" if age <= rpo else "red"
    return RpoLight(color, age, rpo, newest)


def last_jobs(limit: int = 10) -> list[Job]:
    return list(Job.objects.select_related("backup", "created_by")[:limit])


def newest_drill() -> DrillReport | None:
    return DrillReport.objects.select_related("backup").first()


def _chart_rows(limit: int) -> list[tuple[str, object, int, int | None]]:
    """``(target, made at, size, added)`` per stored copy, oldest first: a file's size, or for a repository
    snapshot the repository's size once it was added and what it added (``added`` None for a file)."""
    rows = list(
        BackupCopy.objects.filter(state=BackupCopy.State.STORED).select_related("backup")
        .order_by("-backup__created_at")
        .values_list("target", "backup__created_at", "backup__size", "backup__manifest")[:limit]
    )
    out = []
    for target, at, size, manifest in reversed(rows):
        figures = ((manifest or {}).get("repositories") or {}).get(target)
        if figures is None:
            out.append((target, at, size or 0, None))
        else:
            out.append((target, at, figures.get("total") or 0, figures.get("added") or 0))
    return out


def size_chart(width: int = 900, height: int = 200, limit: int = 200) -> SafeString:
    """Inline SVG: backup size over time, one line per target (the last ``limit`` copies).

    A repository target's line is the repository's size over time, and a bar at each snapshot shows the
    bytes that snapshot added (an unchanged night's bar is a sliver: that is the point of a repository).
    """
    rows = _chart_rows(limit)
    if not rows:
        return mark_safe('<p class="dbs-muted">No backups to chart yet.</p>')
    pad_l, pad_r, pad_t, pad_b = 60, 10, 10, 24
    t0, t1 = rows[0][1].timestamp(), rows[-1][1].timestamp()
    top = max(size for _, _, size, _ in rows) or 1
    span = (t1 - t0) or 1.0
    base = height - pad_b

    def x_of(at) -> float:
        return pad_l + (at.timestamp() - t0) / span * (width - pad_l - pad_r) if t1 > t0 else (width + pad_l) / 2

    def y_of(size) -> float:
        return base - size / top * (height - pad_t - pad_b)

    targets = sorted({t for t, _, _, _ in rows})
    lines = []
    for i, target in enumerate(targets):
        mine = [r for r in rows if r[0] == target]
        pts = " ".join(f"{x_of(at):.1f},{y_of(size):.1f}" for _, at, size, _ in mine)
        color = COLORS[i % len(COLORS)]
        repository = any(added is not None for _, _, _, added in mine)
        legend = f"{target} (repository size; bars: added)" if repository else target
        for _, at, _, added in mine if repository else ():
            h = max(1.0, base - y_of(added or 0))
            lines.append(format_html(
                '<rect class="dbs-chart-added" x="{}" y="{}" width="4" height="{}" fill="{}" '
                'fill-opacity="0.45"><title>{}: {} added</title></rect>',
                f"{x_of(at) - 2:.1f}", f"{base - h:.1f}", f"{h:.1f}", color, target, human_size(added or 0)))
        lines.append(format_html(
            '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>'
            '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
            '<text class="dbs-chart-label" x="{}" y="{}" fill="currentColor" font-size="11">{}</text>',
            color, pts, legend, width - pad_r - 230, pad_t + 3 + 14 * i, color,
            width - pad_r - 216, pad_t + 12 + 14 * i, legend,
        ))
        for p in pts.split():
            x, y = p.split(",")
            lines.append(format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"/>', x, y, color))
    axis = format_html(
        '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{l}" y1="{t}" x2="{l}" y2="{b}" '
        'stroke="#999"/><text x="2" y="{ty}" font-size="11" fill="currentColor">{top}</text>'
        '<text x="2" y="{b}" font-size="11" fill="currentColor">0</text>'
        '<text x="{l}" y="{h}" font-size="11" fill="currentColor">{first}</text>'
        '<text x="{lx}" y="{h}" font-size="11" fill="currentColor" text-anchor="end">{last}</text>',
        l=pad_l, r=width - pad_r, t=pad_t, b=base, ty=pad_t + 10, top=human_size(top), h=height - 6,
        first=timezone.localtime(rows[0][1]).strftime("%Y-%m-%d %H:%M"), lx=width - pad_r,
        last=timezone.localtime(rows[-1][1]).strftime("%Y-%m-%d %H:%M"),
    )
    body = axis + format_html_join("", "{}", ((line,) for line in lines))
    return format_html(
        '<svg class="dbs-chart" role="img" aria-label="Backup size over time per target" width="100%" '
        'viewBox="0 0 {} {}" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">{}</svg>',
        width, height, body,
    )


def jobs_context() -> dict:
    """The last jobs, and whether any is still going (then the card refreshes itself)."""
    reap_lost_jobs()
    jobs = last_jobs()
    return {"jobs": jobs, "jobs_active": any(not j.finished for j in jobs)}


def context() -> dict:
    schedules.ensure_reaper()
    schedules.enable_ready_schedules()
    return {
        "setup_missing": setup_sentence(),
        "per_host_warnings": per_host_warnings(),
        "drill_key_configured": drill_identity_configured(),
        "rpo": rpo_light(),
        "next_runs": schedules.next_runs(),
        **jobs_context(),
        "drill": newest_drill(),
        "chart": size_chart(),
        "backup_count": Backup.objects.count(),
    }
