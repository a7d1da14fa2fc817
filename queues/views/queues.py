"""The pages over every queue: the overview with each queue's stats and problems, and
the tasks held right now. Both can refresh themselves live."""

from __future__ import annotations

import uuid

from django.http import HttpResponse

from queues import charts, snapshots
from queues.browsing import COLUMNS, SORTS, queue_list
from queues.conf import app_settings
from queues.entroq import Task
from queues.entroq.errors import default_err_qmap
from queues.entroq.pauses import pauses_of
from queues.entroq.tasks import MAX_QUEUE_LENGTH
from queues.permissions import VIEW
from queues.service import client
from queues.views.base import (
    CHART_HOURS,
    REFRESH_CHOICES,
    HtmxHttpRequest,
    clamp,
    dashboard_view,
    refresh_seconds,
    render_page,
)

# Rendering costs about 0.3 ms a row: this many held tasks render in time.
MAX_CLAIMS_SHOWN = 200


@dashboard_view(perms=[VIEW])
def overview(request: HtmxHttpRequest) -> HttpResponse:
    """Show every queue (or those under a prefix) with its stats and problems."""
    prefix = request.GET.get("prefix", "").strip()[:MAX_QUEUE_LENGTH]
    sort = request.GET.get("sort", "name")
    sort = sort if sort in SORTS else "name"
    descending = request.GET.get("dir") == "desc"
    per_page = max(1, app_settings().DASHBOARD_QUEUES_PER_PAGE)
    snapshot = snapshots.latest()  # shared by every viewer: one computation a period
    now = snapshot.taken
    stats = {q: s for q, s in snapshot.stats.items() if q.startswith(prefix)}
    table = queue_list(
        stats,
        now,
        sort=sort,
        descending=descending,
        page=clamp(request.GET.get("page"), 1, 1, 2**31 - 1),
        per_page=per_page,
    )
    names = [row.stat.name for row in table.rows]
    pauses = client().paused()
    errors = {name: default_err_qmap(name) for name in names}
    series = snapshots.history(names + list(errors.values()), hours=CHART_HOURS)
    context = {
        "rows": table.rows,
        "prefix": prefix,
        "sort": sort,
        "descending": descending,
        "refresh": refresh_seconds(request),
        "refresh_choices": REFRESH_CHOICES,
        "columns": COLUMNS,
        "totals": table.totals,
        "page": table.page,
        "pages": table.pages,
        "pending": snapshot.pending,
        "first": table.first,
        "last": table.last,
        "now": now,
        "charts": {
            row.stat.name: charts.sparkline(
                series[row.stat.name],
                series[errors[row.stat.name]] if row.errors is not None else None,
            )
            for row in table.rows
        },
        "chart_hours": CHART_HOURS,
        "pauses": pauses,
        "paused": {name for name in names if pauses_of(name, pauses)},
        "nav": "queues",
    }
    return render_page(request, "queues/overview.html", context, regions=["queues"])


@dashboard_view(perms=[VIEW])
def claims(request: HtmxHttpRequest) -> HttpResponse:
    """Show the tasks held right now, grouped by claimant, with each lease's time left."""
    eq = client()
    snapshot = snapshots.latest()
    now = eq.time()
    held: list[Task] = []
    for name, stat in snapshot.stats.items():
        if stat.claimed and len(held) < MAX_CLAIMS_SHOWN:
            held += eq.tasks(
                name, state="claimed", omit_values=True, limit=MAX_CLAIMS_SHOWN - len(held)
            )
    groups: dict[uuid.UUID | None, list[Task]] = {}
    for each in sorted(held, key=lambda t: t.at):
        groups.setdefault(each.claimant, []).append(each)
    context = {
        "groups": sorted(groups.items(), key=lambda item: (-len(item[1]), str(item[0]))),
        "count": len(held),
        # Everything held, as of the snapshot, when more than is shown.
        "total": sum(stat.claimed for stat in snapshot.stats.values()),
        "truncated": len(held) >= MAX_CLAIMS_SHOWN,
        "now": now,
        "refresh": refresh_seconds(request),
        "refresh_choices": REFRESH_CHOICES,
        "nav": "claims",
    }
    return render_page(request, "queues/claims.html", context, regions=["claims"])
