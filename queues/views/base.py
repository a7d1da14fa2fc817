"""What every page of the dashboard shares: the wrapper each view is declared with, the
rendering of a page or of the region htmx asks for, and the reading of parameters."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from queues.conf import app_settings
from queues.entroq import EntroQ, Task
from queues.entroq.tasks import as_uuid
from queues.middleware import to_login

MAX_REFRESH_SECONDS = 3600
# The live-refresh periods a page offers (seconds; 0 for off).
REFRESH_CHOICES = (0, 2, 5, 10, 30, 60)
# The hours of history a page's charts show.
CHART_HOURS = 6

View = TypeVar("View", bound=Callable[..., HttpResponse])


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def dashboard_view(
    *, perms: Sequence[str], methods: Sequence[str] | None = ("GET",)
) -> Callable[[View], View]:
    """Declare a page of the dashboard: it answers only ``methods`` (any, if None), and
    only users who hold every one of ``perms``; no response of it is ever cached, and
    its POSTs are checked for CSRF.

    Anyone not logged in is sent to ``LOGIN_URL`` (the host project's, when the app is
    mounted in one) and back, whether or not the project has ``LoginRequiredMiddleware``;
    a user without a permission gets 403 (``PermissionDenied``), not the login page.
    """

    def wrap(view: View) -> View:
        checked = view
        if perms:
            checked = permission_required(perms, raise_exception=True)(checked)

        @functools.wraps(view)
        def logged_in(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return to_login(request)
            return checked(request, *args, **kwargs)

        wrapped: Callable[..., HttpResponse] = csrf_protect(logged_in)
        if methods is not None:
            wrapped = require_http_methods(list(methods))(wrapped)
        return cast(View, never_cache(wrapped))

    return wrap


def render_page(
    request: HtmxHttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    regions: Iterable[str] = (),
    status: int = 200,
) -> HttpResponse:
    """Render ``template``, or only the region an htmx request targets."""
    target = request.htmx.target if request.htmx else None
    name = f"{template}#{target}" if target in set(regions) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def clamp(raw: str | None, default: int, low: int, high: int) -> int:
    """Return ``raw`` as an int within ``[low, high]``, or ``default`` if not a number."""
    try:
        number = int(raw) if raw is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))


def refresh_seconds(request: HttpRequest) -> int:
    """Return the live-refresh period asked for (0 for off), never below the minimum."""
    raw = request.GET.get("refresh")
    if raw in ("0", "off"):
        return 0
    default = app_settings().DASHBOARD_REFRESH_SECONDS
    return clamp(raw, default, app_settings().DASHBOARD_MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS)


def next_url(request: HttpRequest, default: str) -> str:
    """Return the local URL to go back to after an action."""
    wanted = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if wanted and safe else default


def task_url(id: uuid.UUID) -> str:
    return reverse("queues:task", kwargs={"id": id})


def task_id(text: str) -> uuid.UUID | None:
    """Return the task ID ``text`` names, or None if it names none (the nil UUID
    included: EntroQ reads it as "none")."""
    try:
        return as_uuid(text.strip())
    except ValueError:
        return None


def find_task(eq: EntroQ, id: uuid.UUID, *, values: bool) -> Task | None:
    found = eq.tasks(ids=[id], omit_values=not values)
    return found[0] if found else None


def missing_task(request: HtmxHttpRequest, id: uuid.UUID) -> HttpResponse:
    """Say that task ``id`` is gone (a 404), or have htmx load the whole page anew."""
    if request.htmx:
        # htmx swaps no 404s: show the whole page (and its messages) instead.
        return HttpResponseClientRedirect(request.get_full_path())
    what = f"No task {id}: it was finished, deleted, or never existed."
    return render_page(request, "queues/not_found.html", {"what": what}, status=404)
