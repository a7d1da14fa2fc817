"""The HTTP API's live workers: a worker over HTTP beats here, and operators list
workers and ask one to stop (see ``queues.liveness``).

A token may beat for a worker only if it may claim from every queue the worker
consumes, and only for a worker it announced itself; it may stop a worker on the same
terms (claiming there already lets it take that worker's tasks). Listing shows the
workers whose every queue the token may read.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from queues import liveness, tokens
from queues.api import _body, endpoint, error
from queues.entroq.tasks import check_queue
from queues.models import ApiToken, WorkerProcess
from queues.service import client

BEAT_FIELDS = {
    "id",
    "host",
    "pid",
    "version",
    "handler",
    "queues",
    "concurrency",
    "prefetch",
    "beat_seconds",
    "done",
    "failed",
    "holding",
    "held",
    "exited",
}


@endpoint("worker_beat", "POST")
def beat(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Record a beat of a worker over HTTP (announcing it at the first); answer whether
    an operator asked it to stop."""
    body: dict[str, Any] = {k: _integral(v) for k, v in _body(request).items()}
    unknown = set(body) - BEAT_FIELDS
    if unknown:
        raise ValueError(f"body: unknown field {sorted(unknown)[0]!r}")
    queues = body.get("queues")
    if not isinstance(queues, list) or not 1 <= len(queues) <= liveness.MAX_QUEUES:
        raise ValueError(f"queues: expected a list of 1 to {liveness.MAX_QUEUES} queue names")
    held = body.get("held", [])
    if not isinstance(held, list) or len(held) > liveness.MAX_HELD_IDS:
        raise ValueError(f"held: expected a list of at most {liveness.MAX_HELD_IDS} task IDs")
    beat_seconds = body.get("beat_seconds", liveness.BEAT_SECONDS)
    worker = liveness.Announcement(
        id=_uuid(body.get("id"), "id"),
        kind=WorkerProcess.Kind.HTTP,
        host=body.get("host", ""),  # every field is checked below
        pid=body.get("pid", -1),
        version=body.get("version", ""),
        handler=body.get("handler", ""),
        queues=tuple(check_queue(q, f"queues[{i}]") for i, q in enumerate(queues)),
        concurrency=body.get("concurrency", 1),
        prefetch=body.get("prefetch", 0),
        beat_seconds=float(beat_seconds) if _number(beat_seconds) else beat_seconds,
    ).checked()
    pulse = liveness.Pulse(
        done=body.get("done", 0),
        failed=body.get("failed", 0),
        holding=body.get("holding", len(held)),
        held=tuple(_uuid(h, f"held[{i}]") for i, h in enumerate(held)),
    ).checked()
    exited = body.get("exited", False)
    if not isinstance(exited, bool):
        raise ValueError("exited: expected true or false")
    tokens.require(token, "claim", worker.queues)
    try:
        if exited:
            liveness.exited(worker, pulse, token=token)
            return JsonResponse({"stop": True})
        stop = liveness.beat(worker, pulse, token=token)
    except liveness.Forbidden as refused:
        raise tokens.Forbidden(str(refused)) from None
    return JsonResponse({"stop": stop})


@endpoint("workers", "GET")
def workers(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """List the workers (those consuming ``queue``, if given) whose every queue the token
    may read, the live first."""
    queue = request.GET.get("queue", "")
    if queue:
        check_queue(queue, "queue")
    now = client().time()
    shown = [
        liveness.as_json(status)
        for status in liveness.workers(now, queue=queue)
        if all(tokens.allows(token, "read", q) for q in status.row.queues)
    ]
    return JsonResponse({"workers": shown})


@endpoint("worker_stop", "POST")
def stop(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Ask a worker to stop after the tasks in hand, at its next beat (audited)."""
    body = _body(request)
    unknown = set(body) - {"id"}
    if unknown:
        raise ValueError(f"body: unknown field {sorted(unknown)[0]!r}")
    id = _uuid(body.get("id"), "id")
    row = WorkerProcess.objects.filter(id=id).first()
    if row is None or not all(tokens.sees(token, q) for q in row.queues):
        return error(404, "not_found", f"no worker {id}")
    tokens.require(token, "claim", row.queues)
    said = liveness.request_stop(row, client().time(), user=token.user)
    row.refresh_from_db()
    answer = liveness.as_json(liveness.status(row, client().time()))
    return JsonResponse({"message": said, "worker": answer})


def _integral(value: object) -> object:
    """Return JSON's integral numbers as ints (``2.0`` is the integer 2 in JSON)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _uuid(raw: object, name: str) -> uuid.UUID:
    if not isinstance(raw, str):
        raise ValueError(f"{name}: expected a UUID")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValueError(f"{name}: not a UUID: {raw[:64]!r}") from None
