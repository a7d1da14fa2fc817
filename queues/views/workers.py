"""The live workers: every ``eqworker`` process, what it consumes, whether it is alive,
and a graceful stop for one (see ``queues.liveness``)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from queues import liveness
from queues.entroq.tasks import MAX_QUEUE_LENGTH
from queues.models import WorkerProcess
from queues.permissions import OPERATE, VIEW
from queues.service import client
from queues.views.base import (
    REFRESH_CHOICES,
    HtmxHttpRequest,
    dashboard_view,
    next_url,
    refresh_seconds,
    render_page,
)


@dashboard_view(perms=[VIEW])
def workers(request: HtmxHttpRequest) -> HttpResponse:
    """List the workers (those consuming ``queue``, if given), the live first; prune
    the rows of workers long gone."""
    now = client().time()
    liveness.prune()
    queue = request.GET.get("queue", "").strip()[:MAX_QUEUE_LENGTH]
    found = liveness.workers(now, queue=queue)
    context = {
        "workers": found,
        "live": sum(1 for status in found if status.live),
        "queue": queue,
        "stale_after": liveness.stale_after(liveness.BEAT_SECONDS).total_seconds(),
        "prune_after": liveness.PRUNE_AFTER.total_seconds(),
        "now": now,
        "refresh": refresh_seconds(request),
        "refresh_choices": REFRESH_CHOICES,
        "nav": "workers",
    }
    return render_page(request, "queues/workers.html", context, regions=["workers"])


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
def stop_worker(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Ask a worker to stop after the tasks in hand, at its next beat (audited)."""
    row = WorkerProcess.objects.filter(id=id).first()
    if row is None:
        raise Http404("no such worker")
    said = liveness.request_stop(row, client().time(), user=request.user)
    messages.success(request, said[:1].upper() + said[1:] + ".")
    return HttpResponseRedirect(next_url(request, reverse("queues:workers")), status=303)


@dashboard_view(perms=[VIEW])
def queue_consumers(request: HtmxHttpRequest) -> HttpResponse:
    """Say how many live workers consume the queue ``name`` (a queue page loads it)."""
    queue = request.GET.get("name", "")[:MAX_QUEUE_LENGTH]
    count = liveness.consumers(queue, client().time()) if queue else 0
    return render(request, "queues/workers.html#consumers", {"queue": queue, "count": count})
