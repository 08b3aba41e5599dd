"""The RTO trend as a small inline SVG: no JavaScript charting library for one line of points."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from dbs_admin.models import DrillReport

WIDTH, HEIGHT, PAD = 640, 160, 28


def rto_points(limit: int = 30) -> list[DrillReport]:
    """The newest finished drills with a measured restore time, oldest first."""
    qs = DrillReport.objects.filter(passed__isnull=False, restore_seconds__isnull=False).order_by("-started_at")
    return list(reversed(qs[:limit]))


def rto_chart(limit: int = 30) -> SafeString:
    drills = rto_points(limit)
    if not drills:
        return format_html('<p class="dbs-muted">{}</p>', "No drill has measured a restore time yet.")
    top = max(d.restore_seconds for d in drills) or 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(drills) - 1)

    def xy(i: int, d: DrillReport) -> tuple[float, float]:
        return PAD + i * step, HEIGHT - PAD - (HEIGHT - 2 * PAD) * d.restore_seconds / top

    coords = [xy(i, d) for i, d in enumerate(drills)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="4" fill="{}"><title>#{} {}: {} s ({})</title></circle>',
        (
            (f"{x:.1f}", f"{y:.1f}", "#2e9e44" if d.passed else "#cc3333", d.pk,
             d.started_at.strftime("%Y-%m-%d %H:%M"), f"{d.restore_seconds:.1f}", "passed" if d.passed else "failed")
            for (x, y), d in zip(coords, drills)
        ),
    )
    return format_html(
        '<svg class="dbs-chart" role="img" aria-label="Restore time (RTO) of the last {n} drills" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
        '<text x="{pad}" y="14" font-size="11">RTO, seconds (max {top} s)</text>'
        '<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>'
        '<polyline points="{line}" fill="none" stroke="#417690" stroke-width="2"/>{dots}</svg>',
        n=len(drills), w=WIDTH, h=HEIGHT, pad=PAD, top=f"{top:.1f}", base=HEIGHT - PAD, right=WIDTH - PAD,
        line=mark_safe(line), dots=dots,
    )
