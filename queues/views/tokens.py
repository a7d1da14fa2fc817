"""The user's API tokens: list them, create one (its secret shown once), revoke one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from queues import audit, tokens
from queues.actions import CREATE_TOKEN, REVOKE_TOKEN
from queues.models import ApiToken
from queues.permissions import CHANGE_TOKENS, VIEW
from queues.views.base import HtmxHttpRequest, dashboard_view, render_page


@dashboard_view(perms=[VIEW], methods=None)
def api_tokens(request: HtmxHttpRequest) -> HttpResponse:
    """List the user's API tokens; create one (its secret is shown once, here)."""
    context: dict[str, Any] = {"nav": "tokens", "actions": tokens.ACTIONS}
    status = 200
    if request.method == "POST":
        name = request.POST.get("name", "")
        lines = [line for line in request.POST.get("grants", "").splitlines() if line.strip()]
        try:
            token, context["secret"] = tokens.create(
                request.user,  # type: ignore[arg-type]
                name,
                [tokens.Grant.parse(line) for line in lines],
            )
            audit.token(request.user, CREATE_TOKEN, token)
            context["created"] = token
        except ValueError as problem:
            context.update(problem=str(problem), name=name, grants="\n".join(lines))
            status = 400
    context["tokens"] = [
        (token, tokens.grants_of(token))
        for token in ApiToken.objects.filter(user__pk=str(request.user.pk)).order_by("-created")
    ]
    return render_page(request, "queues/tokens.html", context, status=status)


@dashboard_view(perms=[VIEW], methods=["POST"])
def revoke_api_token(request: HtmxHttpRequest, key_id: str) -> HttpResponse:
    """Revoke one of the user's tokens (any user's, with the admin's change permission)."""
    found = ApiToken.objects.filter(key_id=key_id)
    if not request.user.has_perm(CHANGE_TOKENS):
        found = found.filter(user__pk=str(request.user.pk))
    token = found.first()
    if token is None:
        raise Http404("no such token")
    tokens.revoke(token)
    audit.token(request.user, REVOKE_TOKEN, token)
    messages.success(request, f"Revoked the token {token.name} ({token.key_id}…).")
    return HttpResponseRedirect(reverse("queues:tokens"), status=303)
