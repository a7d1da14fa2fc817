"""The HTTP API's undo: ``GET /undoable`` lists the operators' deletions, moves and
retries that are kept for undo, and ``POST /undo`` puts one back (see ``queues.undo``).

A token sees an undoable action when it may read every queue the action touched (its
``scope``, the prefix they share), and undoes it only with the grants the undo needs
there: ``insert`` to put deleted tasks back, ``change`` to move moved tasks back, and
``insert`` and ``delete`` to undo a retry. An action on tasks that others held needs a
user with the force permission too. Each undo is written to the audit log under the
token's user, and does at most ``UNDO_PER_CALL`` tasks: call again while
``remaining`` is not 0.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q
from django.db.models.functions import Substr
from django.http import HttpRequest, HttpResponse, JsonResponse

from queues import audit, tokens, undo
from queues.actions import UNDO
from queues.api import _body, endpoint, error
from queues.entroq import wire
from queues.models import ApiToken, Undoable
from queues.permissions import FORCE, codename
from queues.service import client

# What an undo of each action does, and so the grants it needs over the action's scope.
UNDO_GRANTS = {"delete": ("insert",), "move": ("change",), "retry": ("insert", "delete")}
MAX_LISTED = 200


def _visible(token: ApiToken) -> Any:
    """Return the undoable actions whose every queue ``token`` may read."""
    readable = tokens.readable_prefixes(token)
    if not readable:
        return Undoable.objects.none()
    if "" in readable:
        return Undoable.objects.all()
    # The start of the scope compared as text, not by LIKE, which ignores case in SQLite.
    heads = {f"head{i}": Substr("scope", 1, len(p)) for i, p in enumerate(readable)}
    return Undoable.objects.annotate(**heads).filter(
        reduce(or_, (Q(**{f"head{i}": p}) for i, p in enumerate(readable)))
    )


@endpoint("undoable", "GET")
def undoable(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """List the latest undoable actions the token may read, newest first."""
    limit = wire.param_int(request.GET.get("limit"), "limit", 0) or 50
    found = _visible(token)[: min(limit, MAX_LISTED)]
    return JsonResponse({"undoable": [_encode(u) for u in found]})


@endpoint("undo", "POST")
def undo_action(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Put back what one undoable action deleted, moved or retried, up to a bounded
    number of tasks; say what was done, what was left out and why, and what remains."""
    body = _body(request)
    unknown = set(body) - {"undoable"}
    if unknown:
        raise ValueError(f"body: unknown field {sorted(unknown)[0]!r}")
    pk = body.get("undoable")
    if isinstance(pk, float) and pk.is_integer():  # JSON's 2.0 is the integer 2
        pk = int(pk)
    if isinstance(pk, bool) or not isinstance(pk, int) or not 1 <= pk < 2**63:
        raise ValueError("undoable: expected the positive integer ID of an undoable action")
    found = _visible(token).select_related("run").filter(pk=pk).first()
    if found is None:  # one answer for missing and unseen: a token learns nothing
        return error(404, "not_found", f"no undoable action {pk} (kept for a while only)")
    for action in UNDO_GRANTS.get(found.action, ("change",)):
        if not tokens.allows_under(token, action, found.scope):
            raise tokens.Forbidden(f"this token may not {action} in every queue of undo {pk}")
    if found.forced and not token.user.has_perm(FORCE):
        audit.refused(token.user, UNDO, [], f"undo #{pk} needs the {codename(FORCE)} permission")
        raise tokens.Forbidden("its tasks were held: undoing it needs the force permission")
    why = undo.refusal(found)
    if why:
        return error(409, "busy", why)
    if not undo.pending(found):
        return JsonResponse({"done": [], "conflicts": [], "remaining": 0})
    result = undo.undo(client(), found, token.user, username=token.user.get_username())
    return JsonResponse(
        {
            "done": [wire.encode_task_id(t) for t in result.done],
            "conflicts": [{**wire.encode_task_id(t), "why": why} for t, why in result.conflicts],
            "remaining": result.remaining,
        }
    )


def _encode(undoable: Undoable) -> dict[str, Any]:
    return {
        "id": undoable.pk,
        "created": undoable.created.isoformat(),
        "user": undoable.username,
        "action": undoable.action,
        "scope": undoable.scope,
        "forced": undoable.forced,
        "remaining": undoable.left,
        "undone": undoable.undone.isoformat() if undoable.undone else None,
    }
