"""Undo: put back what an operator deleted, or move back what they moved, from the
message that reports the action or from its audit entry. The keeping and putting back
are ``queues.undo``'s."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from queues import audit, undo
from queues.actions import UNDO
from queues.models import Undoable
from queues.permissions import FORCE, OPERATE, VIEW, codename
from queues.service import client
from queues.views.base import HtmxHttpRequest, dashboard_view, next_url


@dashboard_view(perms=[VIEW, OPERATE], methods=["POST"])
def undo_action(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Put back (a bounded number of) the tasks an action deleted or moved."""
    back = next_url(request, reverse("queues:audit"))
    undoable = Undoable.objects.select_related("run", "entry").filter(pk=pk).first()
    if undoable is None:
        hours = f"{undo.keep_seconds() / 3600:g}"
        raise Http404(f"Nothing to undo: what was deleted is kept for {hours} hours.")
    if undoable.forced and not request.user.has_perm(FORCE):
        # Its tasks were held: putting them back may run them twice, as forcing might.
        audit.refused(request.user, UNDO, [], f"undo #{pk} needs the {codename(FORCE)} permission")
        raise PermissionDenied("Undoing an action on tasks that others held needs force.")
    why = undo.refusal(undoable)
    if why:
        messages.warning(request, f"Cannot undo yet: {why}.")
        return HttpResponseRedirect(back, status=303)
    if not undo.pending(undoable):
        messages.info(request, "Already undone: nothing is left to put back.")
        return HttpResponseRedirect(back, status=303)
    try:
        result = undo.undo(client(), undoable, request.user)
    except ValueError as error:  # what the store refuses now (a value over a lowered limit)
        messages.error(request, f"Cannot undo: {error}")
        return HttpResponseRedirect(back, status=303)
    level, text = undo.outcome(undoable, result)
    # More than one request's worth: the same button goes on where this one stopped.
    tag = undo.offer_tag(undoable) if result.remaining else ""
    messages.add_message(request, level, text, extra_tags=tag)
    return HttpResponseRedirect(back, status=303)
