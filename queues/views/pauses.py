"""Pausing and resuming queues from the dashboard: a queue, or every queue under a
prefix (``billing/*``). Claims skip what is paused; nothing else changes. Each is
written to the audit log and ends with a redirect (303) back to the page it came from."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse

from queues import pausing
from queues.actions import PAUSE
from queues.permissions import OPERATE, VIEW
from queues.views.base import HtmxHttpRequest, dashboard_view, next_url


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
def pause(request: HtmxHttpRequest, action: str) -> HttpResponse:
    """Pause or resume the queue (or ``prefix/*``) the form names."""
    back = next_url(request, reverse("queues:overview"))
    text = request.POST.get("queue", "").strip()
    try:
        changed, _ = pausing.apply(
            action,
            [text],
            user_id=request.user.pk,
            username=request.user.get_username(),
            via="the dashboard",
        )
    except ValueError as error:
        messages.error(request, f"Nothing was {action}d: {error}.")
        return HttpResponseRedirect(back, status=303)
    if action == PAUSE:
        if changed:
            messages.success(
                request, f"Paused {text}: workers claim nothing from it until resumed."
            )
        else:
            messages.info(request, f"{text} was paused already.")
    elif changed:
        messages.success(request, f"Resumed {text}: its waiting workers claim again now.")
    else:
        messages.info(request, f"{text} was not paused (a pause of its prefix may hold it).")
    return HttpResponseRedirect(back, status=303)
