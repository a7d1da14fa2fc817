"""The operator dashboard: pages and actions over the client API (``queues.entroq``).

Each page is one URL. An htmx request aimed at one of a page's regions (its
``HX-Target``) gets only that region, ``template.html#region``; every other request
gets the whole page, so the dashboard works without JavaScript. Actions are POSTs
that carry the task versions the operator saw: a task that changed since is reported
as a conflict and left alone. After an action the browser is redirected (303) to the
page it came from, which htmx follows and swaps in.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from queues import audit, bulk, charts, conf, snapshots, tokens, triage, values
from queues.entroq import EntroQ, ModifyArg, QueueStat, Task, TaskID, ops, wire
from queues.entroq.django_backend import is_timeout
from queues.entroq.errors import ERROR_SUFFIX, default_err_qmap
from queues.entroq.kinds import MAX_KIND
from queues.entroq.tasks import MAX_QUEUE_LENGTH, TASK_STATES, as_uuid, check_queue, parse_json
from queues.models import ApiToken, AuditEntry, BulkRun
from queues.service import client
from queues.templatetags.dashboard import duration, queue_url

VIEW = "queues.view_task"
VIEW_VALUE = "queues.view_task_value"
OPERATE = "queues.operate_task"
FORCE = "queues.force_task"
# Bytes of each value a list shows: enough for a one-line preview.
PREVIEW_BYTES = 160
MAX_REFRESH_SECONDS = 3600
# Rendering costs about 0.3 ms a row: this many held tasks render in time.
MAX_CLAIMS_SHOWN = 200
CHART_HOURS = 6


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def render_page(
    request: HtmxHttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    regions: Iterable[str] = (),
    status: int = 200,
) -> HttpResponse:
    """Render ``template``, or only the region an htmx request targets."""
    target = request.htmx.target if request.htmx else None
    name = f"{template}#{target}" if target in set(regions) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def clamp(raw: str | None, default: int, low: int, high: int) -> int:
    """Return ``raw`` as an int within ``[low, high]``, or ``default`` if not a number."""
    try:
        number = int(raw) if raw is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))


def refresh_seconds(request: HttpRequest) -> int:
    """Return the live-refresh period asked for (0 for off), never below the minimum."""
    raw = request.GET.get("refresh")
    if raw in ("0", "off"):
        return 0
    default = conf.get("DASHBOARD_REFRESH_SECONDS")
    return clamp(raw, default, conf.get("DASHBOARD_MIN_REFRESH_SECONDS"), MAX_REFRESH_SECONDS)


def next_url(request: HttpRequest, default: str) -> str:
    """Return the local URL to go back to after an action."""
    wanted = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if wanted and safe else default


def task_url(id: uuid.UUID) -> str:
    return reverse("queues:task", kwargs={"id": id})


def task_id(text: str) -> uuid.UUID | None:
    """Return the task ID ``text`` names, or None if it names none (the nil UUID
    included: EntroQ reads it as "none")."""
    try:
        return as_uuid(text.strip())
    except ValueError:
        return None


# The queues overview.


@dataclass
class QueueRow:
    stat: QueueStat
    #: The size of the paired error queue; None for an error queue itself.
    errors: int | None
    #: Seconds the oldest available task has waited, if any is available.
    age: float | None
    problems: list[str] = field(default_factory=list)
    #: A task was claimed often: workers may be crashing on it.
    looping: bool = False

    @property
    def is_error_queue(self) -> bool:
        return self.stat.name.endswith(ERROR_SUFFIX)


SORTS: dict[str, Callable[[QueueRow], Any]] = {
    "name": lambda row: row.stat.name,
    "size": lambda row: row.stat.size,
    "available": lambda row: row.stat.available,
    "claimed": lambda row: row.stat.claimed,
    "future": lambda row: row.stat.future,
    "max_claims": lambda row: row.stat.max_claims,
    "errors": lambda row: row.errors or 0,
    "age": lambda row: row.age or 0.0,
}


def queue_rows(stats: dict[str, QueueStat], now: datetime) -> list[QueueRow]:
    """Return the overview's rows, each with its error queue's size and its problems."""
    warn_claims = conf.get("DASHBOARD_WARN_CLAIMS")
    warn_age = conf.get("DASHBOARD_WARN_AGE_SECONDS")
    rows = []
    for name, stat in stats.items():
        errors = None
        if not name.endswith(ERROR_SUFFIX):
            paired = stats.get(default_err_qmap(name))
            errors = paired.size if paired else 0
        age = None
        if stat.available and stat.earliest is not None and stat.earliest <= now:
            age = (now - stat.earliest).total_seconds()
        row = QueueRow(stat, errors, age)
        if errors or (row.is_error_queue and stat.size):
            row.problems.append("failed tasks")
        if stat.max_claims >= warn_claims:
            row.looping = True
            row.problems.append(f"a task claimed {stat.max_claims} times")
        if age is not None and age >= warn_age:
            row.problems.append("tasks waiting long")
        rows.append(row)
    return rows


@require_GET
@permission_required(VIEW, raise_exception=True)
def overview(request: HtmxHttpRequest) -> HttpResponse:
    """Show every queue (or those under a prefix) with its stats and problems."""
    prefix = request.GET.get("prefix", "").strip()[:MAX_QUEUE_LENGTH]
    sort = request.GET.get("sort", "name")
    sort = sort if sort in SORTS else "name"
    descending = request.GET.get("dir") == "desc"
    per_page = max(1, int(conf.get("DASHBOARD_QUEUES_PER_PAGE")))
    snapshot = snapshots.latest()  # shared by every viewer: one computation a period
    now = snapshot.taken
    stats = {q: s for q, s in snapshot.stats.items() if q.startswith(prefix)}
    every = sorted(queue_rows(stats, now), key=SORTS[sort], reverse=descending)
    # A page of rows: rendering is the cost that grows with the number of queues.
    pages = max(1, -(-len(every) // per_page))
    page = clamp(request.GET.get("page"), 1, 1, pages)
    rows = every[(page - 1) * per_page : page * per_page]
    names = [row.stat.name for row in rows]
    errors = {name: default_err_qmap(name) for name in names}
    series = snapshots.history(names + list(errors.values()), hours=CHART_HOURS)
    context = {
        "rows": rows,
        "prefix": prefix,
        "sort": sort,
        "descending": descending,
        "refresh": refresh_seconds(request),
        "refresh_choices": (0, 2, 5, 10, 30, 60),
        "columns": [
            ("name", "Queue"),
            ("size", "Size"),
            ("available", "Available"),
            ("claimed", "Claimed"),
            ("future", "Scheduled"),
            ("max_claims", "Max claims"),
            ("errors", "Errors"),
            ("age", "Oldest waiting"),
        ],
        "totals": {
            "queues": len(every),
            "tasks": sum(row.stat.size for row in every),
            "problems": sum(1 for row in every if row.problems),
        },
        "page": page,
        "pages": pages,
        "pending": snapshot.pending,
        "first": (page - 1) * per_page + 1,
        "last": (page - 1) * per_page + len(rows),
        "now": now,
        "charts": {
            row.stat.name: charts.sparkline(
                series[row.stat.name],
                series[errors[row.stat.name]] if row.errors is not None else None,
            )
            for row in rows
        },
        "chart_hours": CHART_HOURS,
        "nav": "queues",
    }
    return render_page(request, "queues/overview.html", context, regions=["queues"])


# The tasks of one queue.


def encode_cursor(task: Task) -> str:
    return wire.encode_bound(task.at, task.id)


def decode_cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    """Return the ``(at, id)`` bound a page link carries, or None if absent or garbled."""
    try:
        return wire.decode_bound(raw, "cursor") if raw else None
    except ValueError:
        return None


@dataclass
class TaskPage:
    tasks: list[Task]
    older: str | None  # cursor for the page of older tasks, if there may be one
    newer: str | None


def browse(
    eq: EntroQ,
    queue: str,
    *,
    newest_first: bool,
    after: tuple[datetime, uuid.UUID] | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
    **filters: Any,
) -> TaskPage:
    """Return one page of ``queue`` by keyset: from a bound, never by OFFSET."""
    if before is not None:
        found = eq.tasks(queue, newest_first=True, before=before, limit=limit + 1, **filters)
        more_older, more_newer = len(found) > limit, True
        in_time_order = found[:limit][::-1]
    elif after is not None or not newest_first:
        found = eq.tasks(queue, after=after, limit=limit + 1, **filters)
        more_older, more_newer = after is not None, len(found) > limit
        in_time_order = found[:limit]
    else:
        found = eq.tasks(queue, newest_first=True, limit=limit + 1, **filters)
        more_older, more_newer = len(found) > limit, False
        in_time_order = found[:limit][::-1]
    first, last = (in_time_order[0], in_time_order[-1]) if in_time_order else (None, None)
    return TaskPage(
        tasks=in_time_order[::-1] if newest_first else in_time_order,
        older=encode_cursor(first) if first and more_older else None,
        newer=encode_cursor(last) if last and more_newer else None,
    )


@never_cache
@require_GET
@permission_required(VIEW, raise_exception=True)
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
    limit = clamp(request.GET.get("limit"), conf.get("DASHBOARD_PAGE_SIZE"), 10, 500)
    can_see_values = request.user.has_perm(VIEW_VALUE)
    needle = request.GET.get("q", "") if can_see_values else ""
    search = _search(eq, name, needle, request, limit) if needle else None
    page = (
        search.page
        if search
        else browse(
            eq,
            name,
            newest_first=newest_first,
            after=decode_cursor(request.GET.get("after")),
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
        "search": search,
        "now": now,
        "nav": "queues",
    }
    return render_page(request, "queues/queue.html", context, regions=["tasks"])


@dataclass
class Search:
    """A bounded search of values: what it found, and where it stopped if it stopped."""

    needle: str
    page: TaskPage
    scanned: int
    stopped: str | None = None
    #: It stopped at a page of matches, not at the scan cap.
    full: bool = False
    problem: str = ""


def _search(eq: EntroQ, queue: str, needle: str, request: HttpRequest, limit: int) -> Search:
    """Search the next ``SEARCH_SCAN`` tasks of ``queue`` (from ``after``) for ``needle``."""
    scan = conf.get("DASHBOARD_SEARCH_SCAN")
    empty = TaskPage(tasks=[], older=None, newer=None)
    backend = eq.backend
    if not backend.supports_value_search:
        return Search(needle, empty, 0, problem="Searching values needs the database backend.")
    try:
        found, stopped = backend.search_values(
            queue,
            needle.encode(),
            after=decode_cursor(request.GET.get("after")),
            scan=scan,
            limit=limit,
            timeout=conf.get("DASHBOARD_SEARCH_SECONDS"),
        )
    except OperationalError as error:
        if not is_timeout(error):
            raise
        seconds = conf.get("DASHBOARD_SEARCH_SECONDS")
        problem = f"The search took over {seconds} s and was stopped; narrow it down."
        return Search(needle, empty, scan, problem=problem)
    stop = wire.encode_bound(*stopped) if stopped else None
    full = len(found) >= limit
    return Search(needle, TaskPage(tasks=found, older=None, newer=None), scan, stop, full=full)


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


def _find(eq: EntroQ, id: uuid.UUID, *, values: bool) -> Task | None:
    found = eq.tasks(ids=[id], omit_values=not values)
    return found[0] if found else None


def _missing(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    if request.htmx:
        # htmx swaps no 404s: show the whole page (and its messages) instead.
        return HttpResponseClientRedirect(request.get_full_path())
    what = f"No task {id}: it was finished, deleted, or never existed."
    return render_page(request, "queues/not_found.html", {"what": what}, status=404)


@never_cache
@require_GET
@permission_required(VIEW, raise_exception=True)
def task(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Show every field of a task, its claim in words, and (with permission) its value."""
    eq = client()
    can_see_values = request.user.has_perm(VIEW_VALUE)
    found = _find(eq, id, values=can_see_values)
    if found is None:
        return _missing(request, id)
    now = eq.time()
    inline = conf.get("DASHBOARD_INLINE_VALUE_BYTES")
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


@never_cache
@require_GET
@permission_required([VIEW, VIEW_VALUE], raise_exception=True)
def task_value(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Send a task's value as a download, whatever its size or content."""
    found = _find(client(), id, values=True)
    if found is None:
        return _missing(request, id)
    response = HttpResponse(found.value, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, f"task-{id}.bin")
    return response


@require_GET
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


# Tasks held right now.


@require_GET
@permission_required(VIEW, raise_exception=True)
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
        "refresh_choices": (0, 2, 5, 10, 30, 60),
        "nav": "claims",
    }
    return render_page(request, "queues/claims.html", context, regions=["claims"])


# Actions.

SIMPLE_ACTIONS: dict[str, Callable[[Task], Sequence[ModifyArg]]] = {
    "retry": ops.retry,
    "release": ops.release,
    "delete": ops.delete,
}
PAST_TENSE = {
    "retry": "Retried",
    "release": "Released",
    "delete": "Deleted",
    "move": "Moved",
    "edit": "Saved",
}
AUDITED_ACTIONS = [*PAST_TENSE, "create token", "revoke token"]


def _items(request: HttpRequest) -> list[TaskID]:
    """Return the task versions a form carries as ``task=<id>:<version>``."""
    items = []
    for raw in request.POST.getlist("task"):
        id_text, _, version_text = raw.partition(":")
        id = task_id(id_text)
        version = clamp(version_text, -1, -1, 2**31 - 1)
        if id is not None and version >= 0:  # a garbled box is not a task anyone saw
            items.append(TaskID(id, version))
    return items


@require_POST
@permission_required([VIEW, OPERATE], raise_exception=True)
def task_action(request: HtmxHttpRequest, id: uuid.UUID, action: str) -> HttpResponse:
    """Retry, release, move or delete one task at the version the form carries."""
    version = clamp(request.POST.get("version"), -1, -1, 2**31 - 1)
    if version < 0:
        messages.error(request, "The form did not say which version of the task you saw.")
        return HttpResponseRedirect(task_url(id), status=303)
    return act(request, action, [TaskID(id, version)], task_url(id), cancel=task_url(id))


@require_POST
@permission_required([VIEW, OPERATE], raise_exception=True)
def bulk_action(request: HtmxHttpRequest, action: str) -> HttpResponse:
    """Retry, release, move or delete the selected tasks."""
    back = next_url(request, reverse("queues:overview"))
    items = _items(request)
    if not items:
        messages.warning(request, "No tasks were selected.")
        return HttpResponseRedirect(back, status=303)
    return act(request, action, items, back)


def act(
    request: HtmxHttpRequest,
    action: str,
    items: list[TaskID],
    back: str,
    *,
    cancel: str | None = None,
) -> HttpResponse:
    """Run ``action`` on ``items`` through the client API, log it, and go ``back``
    (or where the form says); a delete first asks, offering ``cancel``."""
    back = next_url(request, back)
    target = ""
    if action in SIMPLE_ACTIONS:
        build = SIMPLE_ACTIONS[action]
    elif action == "move":
        target = request.POST.get("queue", "").strip()
        try:
            build = ops.moving(target)
        except (TypeError, ValueError) as error:
            messages.error(request, f"Cannot move there: {error}.")
            return HttpResponseRedirect(back, status=303)
    else:
        raise Http404(f"no action {action!r}")
    if action == "delete" and request.POST.get("confirmed") != "yes":
        return confirm_delete(request, items, back, cancel or back)
    return run_action(request, action, items, build, back, target=target)


def run_action(
    request: HtmxHttpRequest,
    action: str,
    items: list[TaskID],
    build: Callable[[Task], Sequence[ModifyArg]],
    back: str,
    *,
    target: str = "",
) -> HttpResponse:
    force = request.POST.get("force") in ("on", "yes")
    if force and not request.user.has_perm(FORCE):
        audit.refused(request.user, action, items, "force needs the force_task permission")
        raise PermissionDenied("Acting on tasks that others hold needs the force permission.")
    try:
        result = ops.apply_to_versions(
            client(), items, build, force=force, values=action == "retry"
        )
    except Exception as error:
        audit.failed(request.user, action, items, f"{type(error).__name__}: {error}")
        raise
    audit.record(request.user, action, result, target=target, forced=force)
    _report(request, action, result, target)
    return HttpResponseRedirect(back, status=303)


def _report(request: HttpRequest, action: str, result: ops.BulkResult, target: str) -> None:
    done = len(result.done)
    noun = "task" if done == 1 else "tasks"
    where = f" to {target}" if target else ""
    if not result.conflicts:
        messages.success(request, f"{PAST_TENSE[action]} {done} {noun}{where}.")
        return
    reasons = "; ".join(f"{item.id}: {why}" for item, why in result.conflicts[:5])
    more = len(result.conflicts) - 5
    if more > 0:
        reasons += f"; and {more} more"
    left = len(result.conflicts)
    if done:
        text = f"{PAST_TENSE[action]} {done} {noun}{where}; left {left} alone: {reasons}."
        messages.warning(request, text)
    else:
        messages.error(request, f"Nothing was done, {left} left alone: {reasons}.")


def confirm_delete(
    request: HtmxHttpRequest, items: list[TaskID], back: str, cancel: str
) -> HttpResponse:
    """Ask before deleting: list what would go, at the versions the operator saw."""
    found = {t.id: t for t in client().tasks(ids=[i.id for i in items], omit_values=True)}
    region = request.htmx.target if request.htmx else None
    context = {
        "items": [(item, found.get(item.id)) for item in items],
        "back": back,
        "cancel": cancel,
        "region": region,
        "force": request.POST.get("force", ""),
    }
    partial = "#confirm" if region in ("tasks", "task") else ""
    response = render(request, f"queues/confirm_delete.html{partial}", context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


# Editing a value.


@never_cache
@permission_required([VIEW, VIEW_VALUE, OPERATE], raise_exception=True)
def task_edit(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Edit a task's value: validate it, show the diff, then save it and requeue the task."""
    eq = client()
    found = _find(eq, id, values=True)
    if found is None:
        return _missing(request, id)
    try:
        current = found.value.decode("utf-8")
    except UnicodeDecodeError:
        messages.error(request, "This value is binary; download it, edit it, and insert anew.")
        return redirect(task_url(id))
    context: dict[str, Any] = {"task": found, "text": current, "version": found.version}
    context["format"] = "json" if values.show(found.value, 1 << 62).kind == "json" else "text"
    if request.method != "POST":
        return render_page(request, "queues/edit.html", context)
    # Browsers send every line ending as CRLF: keep the value's own.
    text = request.POST.get("value", "").replace("\r\n", "\n")
    if "\r\n" in current:
        text = text.replace("\n", "\r\n")
    version = clamp(request.POST.get("version"), -1, -1, 2**31 - 1)
    context.update(text=text, version=version, format=request.POST.get("format", "text"))
    problem = _invalid_value(text, context["format"], eq.backend.max_value_bytes)
    if problem or version < 0:
        context["problem"] = problem or "The form did not say which version you edited."
        return render_page(request, "queues/edit.html", context, status=400)
    if request.POST.get("confirmed") != "yes":
        context["diff"] = _diff(current, text)
        return render_page(request, "queues/edit.html", context)
    build = ops.editing(text.encode())
    return run_action(request, "edit", [TaskID(id, version)], build, task_url(id))


def _invalid_value(text: str, format: str, limit: int) -> str:
    if format == "json":
        try:
            parse_json(text)
        except ValueError as error:
            return f"Not valid JSON: {error}."
    size = len(text.encode())
    if size > limit:
        return f"The value is {size:,} bytes; the limit is {limit:,}."
    return ""


def _diff(old: str, new: str) -> list[tuple[str, str]]:
    """Return the unified diff of two values as (kind, line) pairs for the template."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), "stored", "edited", n=3
    )
    kinds = {"+": "added", "-": "removed", "@": "hunk"}
    return [(kinds.get(line[:1], "same"), line.rstrip("\n")) for line in lines]


# The audit log.


@require_GET
@permission_required("queues.view_auditentry", raise_exception=True)
def audit_log(request: HtmxHttpRequest) -> HttpResponse:
    """Show the audit log, newest first, filtered by who, what, outcome or task."""
    entries = AuditEntry.objects.all()
    who = request.GET.get("user", "").strip()
    action = request.GET.get("action", "")
    outcome = request.GET.get("outcome", "")
    wanted = request.GET.get("task", "").strip()
    if who:
        entries = entries.filter(username=who)
    if action in AUDITED_ACTIONS:
        entries = entries.filter(action=action)
    if outcome in AuditEntry.Outcome.values:
        entries = entries.filter(outcome=outcome)
    if wanted:
        id = task_id(wanted)
        if id is None:
            messages.warning(request, f"Not a task ID: {wanted}")
        else:
            entries = entries.filter(tasks__icontains=str(id))
    before = clamp(request.GET.get("before"), 0, 0, 2**62)
    if before:
        entries = entries.filter(id__lt=before)
    limit = conf.get("DASHBOARD_PAGE_SIZE")
    page = list(entries[: limit + 1])
    context = {
        "entries": page[:limit],
        "older": page[limit - 1].id if len(page) > limit else None,
        "actions": AUDITED_ACTIONS,
        "outcomes": AuditEntry.Outcome.choices,
        "filters": {"user": who, "action": action, "outcome": outcome, "task": wanted},
        "nav": "audit",
    }
    return render_page(request, "queues/audit.html", context, regions=["entries"])


# API tokens.


@never_cache
@permission_required(VIEW, raise_exception=True)
def api_tokens(request: HtmxHttpRequest) -> HttpResponse:
    """List the user's API tokens; create one (its secret is shown once, here)."""
    context: dict[str, Any] = {"nav": "tokens", "actions": tokens.ACTIONS}
    status = 200
    if request.method == "POST":
        name = request.POST.get("name", "")
        lines = [line for line in request.POST.get("grants", "").splitlines() if line.strip()]
        try:
            token, context["secret"] = tokens.create(
                request.user,  # type: ignore[arg-type]
                name,
                [tokens.Grant.parse(line) for line in lines],
            )
            audit.token(request.user, "create token", token)
            context["created"] = token
        except ValueError as problem:
            context.update(problem=str(problem), name=name, grants="\n".join(lines))
            status = 400
    context["tokens"] = [
        (token, tokens.grants_of(token))
        for token in ApiToken.objects.filter(user__pk=_user_id(request)).order_by("-created")
    ]
    return render_page(request, "queues/tokens.html", context, status=status)


@require_POST
@permission_required(VIEW, raise_exception=True)
def revoke_api_token(request: HtmxHttpRequest, key_id: str) -> HttpResponse:
    """Revoke one of the user's tokens (any user's, with the admin's change permission)."""
    found = ApiToken.objects.filter(key_id=key_id)
    if not request.user.has_perm("queues.change_apitoken"):
        found = found.filter(user__pk=_user_id(request))
    token = found.first()
    if token is None:
        raise Http404("no such token")
    tokens.revoke(token)
    audit.token(request.user, "revoke token", token)
    messages.success(request, f"Revoked the token {token.name} ({token.key_id}…).")
    return HttpResponseRedirect(reverse("queues:tokens"), status=303)


def _user_id(request: HttpRequest) -> int:
    # Every page needs a login (LoginRequiredMiddleware), so the user has a key.
    return int(request.user.pk or 0)


# Bulk runs: every task matching a queue's filter.


def _bulk_form(request: HttpRequest) -> tuple[bulk.Scope, str, str]:
    """Return the scope, action and target a bulk form carries; ``ValueError`` if bad."""
    post = request.POST
    scope = bulk.Scope(
        queue=post.get("queue", ""),
        state=post.get("state", "") if post.get("state") in TASK_STATES else "",
        min_attempt=clamp(post.get("attempt"), 0, 0, 2**31 - 1),
        # Present (even empty: the group of empty errors) only from the triage page.
        error_group=post["group"][:MAX_KIND] if "group" in post else None,
    )
    action = post.get("action", "")
    target = post.get("target", "").strip() if action == "move" else ""
    bulk.action_of(action, target)
    return scope, action, target


@never_cache
@require_POST
@permission_required([VIEW, OPERATE], raise_exception=True)
def bulk_plan(request: HtmxHttpRequest) -> HttpResponse:
    """Show what a bulk action would do: the count, the scope, a sample; then confirm."""
    try:
        scope, action, target = _bulk_form(request)
    except (TypeError, ValueError) as problem:
        messages.error(request, f"Cannot plan that: {problem}.")
        return HttpResponseRedirect(next_url(request, reverse("queues:overview")), status=303)
    return _render_plan(request, scope, action, target)


def _render_plan(
    request: HtmxHttpRequest,
    scope: bulk.Scope,
    action: str,
    target: str,
    problem: str = "",
) -> HttpResponse:
    count, sample = bulk.plan(scope)
    context = {
        "scope": scope,
        "action": action,
        "target": target,
        "count": count,
        "sample": sample,
        "typed": count >= conf.get("BULK_TYPED_CONFIRM"),
        "problem": problem,
        "now": client().time(),
        "nav": "queues",
    }
    return render_page(request, "queues/bulk_plan.html", context, status=400 if problem else 200)


@require_POST
@permission_required([VIEW, OPERATE], raise_exception=True)
def bulk_start(request: HtmxHttpRequest) -> HttpResponse:
    """Start a planned bulk run (typing the count first, for large ones)."""
    try:
        scope, action, target = _bulk_form(request)
    except (TypeError, ValueError) as problem:
        messages.error(request, f"Cannot start that: {problem}.")
        return HttpResponseRedirect(reverse("queues:overview"), status=303)
    # Counted again here: the form's count is the client's word, and may be stale. The
    # IDs read for it are the run's, so the scope is read once.
    ids = scope.ids()
    count = len(ids)
    typed = request.POST.get("typed", "").replace(",", "").strip()
    if count >= conf.get("BULK_TYPED_CONFIRM") and typed != str(count):
        ask = f"Type {count} to confirm: the number of tasks this acts on now."
        return _render_plan(request, scope, action, target, ask)
    try:
        run = bulk.start(request.user, action, scope, target, ids)
    except bulk.AlreadyRunning as running:
        messages.warning(request, f"Run #{running.run.pk} on this scope is still running.")
        return HttpResponseRedirect(reverse("queues:bulk-run", args=[running.run.pk]), status=303)
    return HttpResponseRedirect(reverse("queues:bulk-run", args=[run.pk]), status=303)


@require_GET
@permission_required(VIEW, raise_exception=True)
def bulk_run(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Show a bulk run's progress, live while it runs."""
    run = BulkRun.objects.filter(pk=pk).first()
    if run is None:
        raise Http404("no such bulk run")
    idle = (timezone.now() - run.updated).total_seconds()
    context = {
        "run": run,
        "scope": bulk.Scope(run.queue, **run.filters),
        # No worker has saved progress for a while: none runs, or its carrier is gone.
        "stalled": round(idle) if run.status == BulkRun.Status.RUNNING and idle > 30 else 0,
        "worker_command": bulk.WORKER_COMMAND,
        # As often as the overview may refresh: no more.
        "refresh": conf.get("DASHBOARD_MIN_REFRESH_SECONDS"),
        "nav": "queues",
    }
    return render_page(request, "queues/bulk_run.html", context, regions=["run"])


@require_POST
@permission_required([VIEW, OPERATE], raise_exception=True)
def bulk_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Stop a bulk run after the chunk in hand."""
    run = BulkRun.objects.filter(pk=pk).first()
    if run is None:
        raise Http404("no such bulk run")
    bulk.cancel(run, request.user)
    messages.info(request, f"Run #{run.pk} stops after the chunk in hand.")
    return HttpResponseRedirect(reverse("queues:bulk-run", args=[run.pk]), status=303)


@require_GET
@permission_required(VIEW, raise_exception=True)
def bulk_runs(request: HtmxHttpRequest) -> HttpResponse:
    """List the latest bulk runs."""
    context = {"runs": BulkRun.objects.all()[:100], "nav": "bulk"}
    return render_page(request, "queues/bulk_runs.html", context)


# Error triage.


@require_GET
@permission_required(VIEW, raise_exception=True)
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
