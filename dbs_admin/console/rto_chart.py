"""The drills' trend as a small inline SVG: restore time (RTO) and the whole drill's time, over time.

No JavaScript charting library for two lines of points.
"""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from dbs_admin.models import DrillReport

WIDTH, HEIGHT, PAD = 640, 160, 28
RTO_COLOR, TOTAL_COLOR = "#417690", "#c4701a"


def rto_points(limit: int = 30) -> list[DrillReport]:
    """The newest finished drills with a measured restore time, oldest first."""
    qs = DrillReport.objects.filter(passed__isnull=False, restore_seconds__isnull=False).order_by("-started_at")
    return list(reversed(qs[:limit]))


def _series(drills: list[DrillReport], field: str, color: str, what: str, x, y) -> SafeString:
    points = [(i, d, getattr(d, field)) for i, d in enumerate(drills) if getattr(d, field) is not None]
    if not points:
        return mark_safe("")
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, _, v in points)
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="4" fill="{}" stroke="{}" stroke-width="2">'
        "<title>#{} {}: {} {} s ({})</title></circle>",
        (
            (f"{x(i):.1f}", f"{y(v):.1f}", ("#2e9e44" if d.passed else "#cc3333"), color, d.pk,
             d.started_at.strftime("%Y-%m-%d %H:%M"), what, f"{v:.1f}", "passed" if d.passed else "failed")
            for i, d, v in points
        ),
    )
    return format_html(
        '<polyline class="dbs-series-{}" points="{}" fill="none" stroke="{}" stroke-width="2"/>{}',
        field, mark_safe(line), color, dots,
    )


def rto_chart(limit: int = 30) -> SafeString:
    """RTO (restore) and total (the whole drill) of the last ``limit`` drills on one scale, in seconds."""
    drills = rto_points(limit)
    if not drills:
        return format_html('<p class="dbs-muted">{}</p>', "No drill has measured a restore time yet.")
    top = max(max(d.restore_seconds, d.total_seconds or 0.0) for d in drills) or 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(drills) - 1)

    def x(i: int) -> float:
        return PAD + i * step

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top

    series = format_html(
        "{}{}",
        _series(drills, "total_seconds", TOTAL_COLOR, "whole drill", x, y),
        _series(drills, "restore_seconds", RTO_COLOR, "restore (RTO)", x, y),
    )
    return format_html(
        '<svg class="dbs-chart" role="img" aria-label="Restore time (RTO) and whole drill time of the last {n} '
        'drills" viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
        '<text x="{pad}" y="14" font-size="11" fill="currentColor">seconds (max {top} s):</text>'
        '<text x="{legend1}" y="14" font-size="11" fill="currentColor"><tspan fill="{rto_color}">&#9632;</tspan>'
        ' restore time (RTO)</text>'
        '<text x="{legend2}" y="14" font-size="11" fill="currentColor"><tspan fill="{total_color}">&#9632;</tspan>'
        ' whole drill</text>'
        '<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>{series}</svg>',
        n=len(drills), w=WIDTH, h=HEIGHT, pad=PAD, top=f"{top:.1f}", base=HEIGHT - PAD, right=WIDTH - PAD,
        legend1=PAD + 130, legend2=PAD + 270, rto_color=RTO_COLOR, total_color=TOTAL_COLOR, series=series,
    )
