"""Error triage: an error queue's failures grouped by kind, each group with its bulk
retry and delete."""

from __future__ import annotations

from django.http import HttpResponse

from queues import triage
from queues.entroq.errors import ERROR_SUFFIX
from queues.entroq.tasks import check_queue
from queues.permissions import VIEW
from queues.service import client
from queues.views.base import HtmxHttpRequest, dashboard_view, render_page


@dashboard_view(perms=[VIEW])
def error_triage(request: HtmxHttpRequest) -> HttpResponse:
    """Show an error queue's failures grouped by kind, each with retry and delete."""
    name = request.GET.get("queue", "")
    try:
        check_queue(name)
    except ValueError as error:
        return render_page(request, "queues/not_found.html", {"what": str(error)}, status=404)
    found, total, kinds = triage.groups(name)
    context = {
        "queue": name,
        "groups": found,
        "total": total,
        "kinds": kinds,
        "source": name.removesuffix(ERROR_SUFFIX) if name.endswith(ERROR_SUFFIX) else "",
        "now": client().time(),
        "nav": "queues",
    }
    return render_page(request, "queues/triage.html", context)
