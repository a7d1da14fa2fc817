"""The audit log: every operator action, newest first, filtered by who, what, outcome
or task."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse

from queues import undo
from queues.actions import AUDITED_ACTIONS
from queues.conf import app_settings
from queues.models import AuditEntry
from queues.permissions import VIEW_AUDIT
from queues.views.base import HtmxHttpRequest, clamp, dashboard_view, render_page, task_id


@dashboard_view(perms=[VIEW_AUDIT])
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
    limit = app_settings().DASHBOARD_PAGE_SIZE
    page = list(entries[: limit + 1])
    # Each entry with its offer of an undo, if any: (the undoable action's ID, tasks
    # still to put back).
    offers = undo.pending_by_entry([entry.id for entry in page[:limit]])
    context = {
        "entries": page[:limit],
        "rows": [(entry, offers.get(entry.id)) for entry in page[:limit]],
        "kept": undo.kept_summary(),
        "older": page[limit - 1].id if len(page) > limit else None,
        "actions": AUDITED_ACTIONS,
        "outcomes": AuditEntry.Outcome.choices,
        "filters": {"user": who, "action": action, "outcome": outcome, "task": wanted},
        "nav": "audit",
    }
    return render_page(request, "queues/audit.html", context, regions=["entries"])
