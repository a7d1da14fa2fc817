"""Actions on tasks: retry, release, move or delete one task or the selected ones, and
edit a value. Each acts at the versions the operator saw (a task changed since is
left alone and reported), is written to the audit log, and ends with a redirect (303)
back to the page it came from."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers

from queues import audit, undo, values
from queues.actions import SIMPLE_ACTIONS, outcome
from queues.entroq import ModifyArg, Task, TaskID, ops
from queues.entroq.tasks import parse_json
from queues.permissions import FORCE, OPERATE, VIEW, VIEW_VALUE, codename
from queues.service import client
from queues.views.base import (
    HtmxHttpRequest,
    clamp,
    dashboard_view,
    find_task,
    missing_task,
    next_url,
    render_page,
    task_id,
    task_url,
)


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


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
def task_action(request: HtmxHttpRequest, id: uuid.UUID, action: str) -> HttpResponse:
    """Retry, release, move or delete one task at the version the form carries."""
    version = clamp(request.POST.get("version"), -1, -1, 2**31 - 1)
    if version < 0:
        messages.error(request, "The form did not say which version of the task you saw.")
        return HttpResponseRedirect(task_url(id), status=303)
    return act(request, action, [TaskID(id, version)], task_url(id), cancel=task_url(id))


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
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
        why = f"force needs the {codename(FORCE)} permission"
        audit.refused(request.user, action, items, why)
        raise PermissionDenied("Acting on tasks that others hold needs the force permission.")
    # A delete, a move or a retry keeps what it changes, so that it can be undone.
    keeping = undo.begin(client(), action, request.user, forced=force)
    try:
        result = ops.apply_to_versions(
            keeping or client(),
            items,
            build,
            force=force,
            # A kept deletion keeps the values it deletes.
            values=action == "retry" or (action == "delete" and keeping is not None),
        )
    except Exception as error:
        audit.failed(request.user, action, items, f"{type(error).__name__}: {error}")
        raise
    entry = audit.record(request.user, action, result, target=target, forced=force)
    undoable = keeping.finish(entry) if keeping is not None else None
    level, text = outcome(action, result, target)
    messages.add_message(request, level, text, extra_tags=undo.offer_tag(undoable))
    return HttpResponseRedirect(back, status=303)


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
        "keep_hours": undo.keep_seconds() / 3600,
    }
    partial = "#confirm" if region in ("tasks", "task") else ""
    response = render(request, f"queues/confirm_delete.html{partial}", context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


# Editing a value.


@dashboard_view(perms=[VIEW, VIEW_VALUE, OPERATE], methods=None)
def task_edit(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Edit a task's value: validate it, show the diff, then save it and requeue the task."""
    eq = client()
    found = find_task(eq, id, values=True)
    if found is None:
        return missing_task(request, id)
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
