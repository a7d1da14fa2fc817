"""The pages of tasks: a queue's tasks a page at a time (filtered, or searched by
value), one task with every field and its value, and the way to either by what is
typed in the search box."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import content_disposition_header
from django_htmx.http import HttpResponseClientRedirect

from queues import charts, snapshots, values
from queues.browsing import browse, decode_cursor, search
from queues.conf import app_settings
from queues.entroq import EntroQ, QueueStat, Task, ops
from queues.entroq.errors import ERROR_SUFFIX, default_err_qmap
from queues.entroq.pauses import pauses_of
from queues.entroq.tasks import TASK_STATES, check_queue
from queues.permissions import VIEW, VIEW_VALUE
from queues.service import client
from queues.templatetags.dashboard import duration, queue_url
from queues.views.base import (
    CHART_HOURS,
    HtmxHttpRequest,
    clamp,
    dashboard_view,
    find_task,
    missing_task,
    render_page,
    task_id,
    task_url,
)

# Bytes of each value a list shows: enough for a one-line preview.
PREVIEW_BYTES = 160

# The tasks of one queue.


@dashboard_view(perms=[VIEW])
def queue(request: HtmxHttpRequest, name: str = "") -> HttpResponse:
    """Show a page of a queue's tasks, with filters and older/newer links.

    The name is the rest of the path, or the ``name`` parameter for names that a
    browser would rewrite as a path (see ``queue_url``).
    """
    name = name or request.GET.get("name", "")
    try:
        check_queue(name)
    except ValueError as error:
        return render_page(request, "queues/not_found.html", {"what": str(error)}, status=404)
    eq = client()
    wanted = request.GET.get("id", "").strip()
    if wanted:
        found = _go_to_task(request, eq, wanted)
        if found is not None:
            return found
    state = request.GET.get("state", "")
    state = state if state in TASK_STATES else ""
    min_attempt = clamp(request.GET.get("attempt"), 0, 0, 2**31 - 1)
    newest_first = request.GET.get("order") == "newest"
    limit = clamp(request.GET.get("limit"), app_settings().DASHBOARD_PAGE_SIZE, 10, 500)
    can_see_values = request.user.has_perm(VIEW_VALUE)
    needle = request.GET.get("q", "") if can_see_values else ""
    after = decode_cursor(request.GET.get("after"))
    found_by_search = search(eq, name, needle, after=after, limit=limit) if needle else None
    page = (
        found_by_search.page
        if found_by_search
        else browse(
            eq,
            name,
            newest_first=newest_first,
            after=after,
            before=decode_cursor(request.GET.get("before")),
            limit=limit,
            state=state,
            min_attempt=min_attempt,
            omit_values=not can_see_values,
            preview=PREVIEW_BYTES,
        )
    )
    now = eq.time()
    throughput = snapshots.throughput(name, hours=CHART_HOURS)
    context = {
        "queue": name,
        "pauses": pauses_of(name, eq.paused()),
        "named_by_parameter": "?" in queue_url(name),
        "bounded": bool(request.GET.get("after") or request.GET.get("before")),
        # From the shared snapshot: counting a queue of millions is not a page's job.
        "stat": snapshots.latest().stats.get(name, QueueStat(name=name)),
        "error_queue": None if name.endswith(ERROR_SUFFIX) else default_err_qmap(name),
        "source_queue": name.removesuffix(ERROR_SUFFIX) if name.endswith(ERROR_SUFFIX) else None,
        "triage_url": reverse("queues:triage") + "?" + _query(queue=name),
        "throughput": throughput,
        "throughput_chart": charts.sparkline(throughput, what="tasks leaving a minute"),
        "chart_hours": CHART_HOURS,
        "page": page,
        "rows": [
            {
                "task": task,
                "state": task.state(now),
                "preview": values.preview(task.value) if can_see_values else "",
                "held": _held_by_other(task, now, eq.id),
            }
            for task in page.tasks
        ],
        "state": state,
        "states": TASK_STATES,
        "attempt": min_attempt,
        "order": "newest" if newest_first else "oldest",
        "limit": limit,
        "can_see_values": can_see_values,
        "search": found_by_search,
        "now": now,
        "nav": "queues",
    }
    return render_page(request, "queues/queue.html", context, regions=["tasks"])


def _go_to_task(request: HtmxHttpRequest, eq: EntroQ, wanted: str) -> HttpResponse | None:
    """Return a redirect to the task ``wanted`` names, or None (with a message) if none."""
    id = task_id(wanted)
    if id is None:
        messages.warning(request, f"Not a task ID: {wanted}")
        return None
    if not eq.tasks(ids=[id], omit_values=True):
        messages.warning(request, f"No task {id}: it was finished, deleted, or never existed.")
        return None
    if request.htmx:
        return HttpResponseClientRedirect(task_url(id))
    return redirect(task_url(id))


def _held_by_other(task: Task, now: datetime, claimant: uuid.UUID) -> bool:
    return task.state(now) == "claimed" and task.claimant != claimant


# One task.


def claim_in_words(task: Task, now: datetime) -> str:
    """Say who holds ``task`` and for how long, or since when it is available."""
    if task.at <= now:
        waited = duration((now - task.at).total_seconds())
        if task.claimant is not None and task.claims:
            return f"available for {waited}; the last claim by {task.claimant} has expired"
        return f"available for {waited}"
    left = duration((task.at - now).total_seconds())
    if task.claimant is None:
        return f"scheduled: arrives in {left}"
    return f"claimed by {task.claimant} for {left} more"


@dashboard_view(perms=[VIEW])
def task(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Show every field of a task, its claim in words, and (with permission) its value."""
    eq = client()
    can_see_values = request.user.has_perm(VIEW_VALUE)
    found = find_task(eq, id, values=can_see_values)
    if found is None:
        return missing_task(request, id)
    now = eq.time()
    inline = app_settings().DASHBOARD_INLINE_VALUE_BYTES
    error = ops.error_record(found) if can_see_values else None
    context = {
        "task": found,
        "now": now,
        "state": found.state(now),
        "claim": claim_in_words(found, now),
        "held": _held_by_other(found, now, eq.id),
        "value": values.show(found.value, inline) if can_see_values else None,
        "error": error,
        "original_value": values.show(error.task.value, inline) if error else None,
        "can_see_values": can_see_values,
        "inline_limit": inline,
        "nav": "queues",
    }
    return render_page(request, "queues/task.html", context, regions=["task"])


@dashboard_view(perms=[VIEW, VIEW_VALUE])
def task_value(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Send a task's value as a download, whatever its size or content."""
    found = find_task(client(), id, values=True)
    if found is None:
        return missing_task(request, id)
    response = HttpResponse(found.value, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, f"task-{id}.bin")
    return response


# Any logged-in user: it only redirects, to pages that check their own permissions.
@dashboard_view(perms=())
def go(request: HttpRequest) -> HttpResponse:
    """Go to the task whose ID is typed, else to the queues under the typed prefix."""
    text = request.GET.get("q", "").strip()
    id = task_id(text)
    if id is not None:
        return redirect(task_url(id))
    return redirect(reverse("queues:overview") + "?" + _query(prefix=text))


def _query(**params: str) -> str:
    query = QueryDict(mutable=True)
    query.update({k: v for k, v in params.items() if v})
    return query.urlencode()
