"""The HTTP API's pauses: ``POST /pause``, ``POST /resume`` and ``GET /paused``.

A token pauses or resumes a queue, or every queue under a prefix (``billing/*``), with
the ``pause`` action granted on it; it lists only the pauses of queues it has a grant
for. Each pause and resume is written to the audit log under the token's user.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from queues import pausing, tokens
from queues.actions import PAUSE, RESUME
from queues.api import MAX_CLAIM_QUEUES, _body, endpoint
from queues.entroq import Pause
from queues.entroq.pauses import parse_all
from queues.models import ApiToken
from queues.service import client


def _asked(request: HttpRequest, token: ApiToken) -> list[str]:
    """Return the queue names and prefixes the body asks for, once the token may."""
    body = _body(request)
    unknown = set(body) - {"queues"}
    if unknown:
        raise ValueError(f"body: unknown field {sorted(unknown)[0]!r}")
    texts = body.get("queues")
    if (
        not isinstance(texts, list)
        or not 1 <= len(texts) <= MAX_CLAIM_QUEUES
        or not all(isinstance(t, str) for t in texts)
    ):
        raise ValueError(
            f"queues: expected a list of 1 to {MAX_CLAIM_QUEUES} queue names or prefix/*"
        )
    tokens.require(token, "pause", [p.name for p in parse_all(texts)])
    return texts


def _apply(action: str, request: HttpRequest, token: ApiToken) -> dict[str, Any]:
    texts = _asked(request, token)
    changed, unchanged = pausing.apply(
        action,
        texts,
        user_id=token.user_id,
        username=token.user.get_username(),
        via=f"the API, token {token.name}",
    )
    return {"changed": [str(p) for p in changed], "unchanged": [str(p) for p in unchanged]}


@endpoint("pause", "POST")
def pause(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Pause claims from the queues (and ``prefix/*``) named; say which were paused
    now (``changed``) and which already were (``unchanged``)."""
    return JsonResponse(_apply(PAUSE, request, token))


@endpoint("resume", "POST")
def resume(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """End the pauses named (as they were paused); say which ended (``changed``)
    and which were not in force (``unchanged``)."""
    return JsonResponse(_apply(RESUME, request, token))


@endpoint("paused", "GET")
def paused(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """List the pauses in force over queues the token may read."""
    readable = tokens.readable_prefixes(token)
    return JsonResponse(
        {
            "paused": [
                _encode(p)
                for p in client().paused()
                # A pause within what the token reads, or over it (``*`` over all).
                if any(
                    p.name.startswith(r) or (p.prefix and r.startswith(p.name)) for r in readable
                )
            ]
        }
    )


def _encode(pause: Pause) -> dict[str, Any]:
    return {"queue": str(pause), "since": pause.since.isoformat() if pause.since else None}
