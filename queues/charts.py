"""Small server-rendered SVG charts (no JavaScript, no inline styles: CSS colours them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 120, 24


def sparkline(
    points: Sequence[tuple[datetime, float]],
    errors: Sequence[tuple[datetime, float]] | None = None,
    *,
    what: str = "size",
) -> SafeString:
    """Return an SVG of ``what`` over time (and of the error queue's size), or "" if
    there are too few points."""
    if len(points) < 2:
        return SafeString("")
    top = max([n for _, n in points] + [n for _, n in errors or []] + [1])
    start, end = points[0][0], points[-1][0]
    span = max((end - start).total_seconds(), 1.0)

    def line(series: Sequence[tuple[datetime, float]]) -> str:
        return " ".join(
            f"{WIDTH * (t - start).total_seconds() / span:.1f},"
            f"{HEIGHT - 1 - (HEIGHT - 2) * n / top:.1f}"
            for t, n in series
        )

    latest = points[-1][1]
    low, high = min(n for _, n in points), max(n for _, n in points)
    title = f"{what} {low:g} to {high:g}, now {latest:g}"
    if errors:
        title += f"; errors up to {max(n for _, n in errors)}"
    polylines = [("depth", line(points))]
    if errors and any(n for _, n in errors):
        polylines.append(("errors", line(errors)))
    return format_html(
        '<svg class="spark" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}"><title>{}</title>{}</svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        title,
        title,
        format_html_join("", '<polyline class="{}" points="{}"/>', polylines),
    )
