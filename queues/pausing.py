"""Pausing and resuming queues for operators, written to the audit log.

The dashboard, ``manage.py eq pause/resume`` and the API's ``/pause`` and ``/resume``
all come here; the pausing itself is the client API's (``EntroQ.pause``), which every
backend's claims obey.
"""

from __future__ import annotations

from collections.abc import Sequence

from queues.actions import PAUSE
from queues.entroq import Pause
from queues.entroq.pauses import parse_all
from queues.entroq.tasks import MAX_QUEUE_LENGTH
from queues.models import AuditEntry
from queues.service import client


def apply(
    action: str, texts: Sequence[str], *, user_id: int | None, username: str, via: str
) -> tuple[list[Pause], list[Pause]]:
    """Pause or resume (``action``) the queues ``texts`` name; return the pauses that
    changed and those already as asked. Raise ``ValueError`` for a name no queue can have.

    One audit entry records each call: who, through what (``via``), and what changed.
    """
    wanted = parse_all(texts)
    eq = client()
    changed = eq.pause(*map(str, wanted)) if action == PAUSE else eq.resume(*map(str, wanted))
    unchanged = [p for p in wanted if p not in changed]
    said = ", ".join(map(str, changed)) or "nothing"
    detail = f"{'paused' if action == PAUSE else 'resumed'} {said} (via {via})"
    if unchanged:
        already = "already paused" if action == PAUSE else "not paused"
        detail += f"; {already}: {', '.join(map(str, unchanged))}"
    AuditEntry.objects.create(
        user_id=user_id,
        username=username[:150],
        action=action,
        queue=", ".join(map(str, wanted))[:MAX_QUEUE_LENGTH],
        outcome=AuditEntry.Outcome.DONE,
        detail=detail,
    )
    return changed, unchanged
