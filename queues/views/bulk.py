"""Bulk runs: an action on every task of a queue that matches a filter. Plan it (the
count and a sample), start it (typing the count, for large ones), follow its progress,
cancel it; and the list of the latest runs. The runs themselves are ``queues.bulk``'s."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from queues import bulk, undo
from queues.conf import app_settings
from queues.entroq.kinds import MAX_KIND
from queues.entroq.tasks import TASK_STATES
from queues.models import BulkRun
from queues.permissions import OPERATE, VIEW
from queues.service import client
from queues.views.base import HtmxHttpRequest, clamp, dashboard_view, next_url, render_page


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


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
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
        "typed": count >= app_settings().BULK_TYPED_CONFIRM,
        "problem": problem,
        "now": client().time(),
        "nav": "queues",
    }
    return render_page(request, "queues/bulk_plan.html", context, status=400 if problem else 200)


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
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
    if count >= app_settings().BULK_TYPED_CONFIRM and typed != str(count):
        ask = f"Type {count} to confirm: the number of tasks this acts on now."
        return _render_plan(request, scope, action, target, ask)
    try:
        run = bulk.start(request.user, action, scope, target, ids)
    except bulk.AlreadyRunning as running:
        messages.warning(request, f"Run #{running.run.pk} on this scope is still running.")
        return HttpResponseRedirect(reverse("queues:bulk-run", args=[running.run.pk]), status=303)
    return HttpResponseRedirect(reverse("queues:bulk-run", args=[run.pk]), status=303)


@dashboard_view(perms=[VIEW])
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
        # (the undoable action's ID, tasks still to put back), once the run has ended.
        "undo_offer": undo.run_offer(run),
        # As often as the overview may refresh: no more.
        "refresh": app_settings().DASHBOARD_MIN_REFRESH_SECONDS,
        "nav": "queues",
    }
    return render_page(request, "queues/bulk_run.html", context, regions=["run"])


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
def bulk_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Stop a bulk run after the chunk in hand."""
    run = BulkRun.objects.filter(pk=pk).first()
    if run is None:
        raise Http404("no such bulk run")
    bulk.cancel(run, request.user)
    messages.info(request, f"Run #{run.pk} stops after the chunk in hand.")
    return HttpResponseRedirect(reverse("queues:bulk-run", args=[run.pk]), status=303)


@dashboard_view(perms=[VIEW])
def bulk_runs(request: HtmxHttpRequest) -> HttpResponse:
    """List the latest bulk runs."""
    context = {"runs": BulkRun.objects.all()[:100], "nav": "bulk"}
    return render_page(request, "queues/bulk_runs.html", context)
