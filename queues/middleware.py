"""Middleware of the dashboard."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render, resolve_url
from django.template.response import SimpleTemplateResponse
from django.urls import Resolver404, resolve
from django_htmx.http import HttpResponseClientRedirect

from queues.conf import app_settings
from queues.entroq.django_backend import is_timeout, statement_timeout


class RefuseNulMiddleware:
    """Answer 400 to a URL whose path or query holds a NUL character.

    No queue name, task ID, filter or token holds one, and PostgreSQL refuses NUL in
    text: without this, a NUL would reach a query and fail there as a server error.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        fields = [request.path, *(f"{k}{v}" for k, vs in request.GET.lists() for v in vs)]
        if any("\x00" in field for field in fields):
            return HttpResponseBadRequest(
                "NUL characters are not allowed in URLs.\n", content_type="text/plain"
            )
        return self.get_response(request)


class ApiMiddleware:
    """Answer the HTTP API's operations at once, without the middleware below this one.

    Sessions, CSRF, logins, messages, CSP, htmx and the login throttle serve the
    dashboard; requests that carry an API token need none of them, and a worker
    makes thousands a second, for which they cost more than the API's own work. Put
    it after ``SecurityMiddleware`` and ``RefuseNulMiddleware``. Any other request
    goes on down the chain.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        if not getattr(match.func, "entroq_api", False):
            return self.get_response(request)
        request.resolver_match = match
        response: HttpResponse = match.func(request, *match.args, **match.kwargs)
        # As CommonMiddleware, which the API skips: clients keep the connection
        # alive for the next request without chunked encoding.
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response


def to_login(
    request: HttpRequest, login_url: str | None = None, redirect_field: str = "next"
) -> HttpResponse:
    """Send the browser to the login page (``LOGIN_URL`` unless given), and back after.

    When a session ends under a live refresh or an action, htmx would swap the login
    page into a region of the dashboard; instead the whole page goes to the login,
    which then returns to the page the browser showed.
    """
    htmx = getattr(request, "htmx", None)
    if htmx:
        shown = urlsplit(htmx.current_url or "")
        path = shown.path + (f"?{shown.query}" if shown.query else "") or "/"
        login = redirect_to_login(path, login_url, redirect_field)
        return HttpResponseClientRedirect(login["Location"])
    # As Django's login_required: the whole address when the login is on another site.
    login_url = resolve_url(login_url or settings.LOGIN_URL)
    here = request.build_absolute_uri()
    login_scheme, login_host = urlsplit(login_url)[:2]
    scheme, host = urlsplit(here)[:2]
    if (not login_scheme or login_scheme == scheme) and (not login_host or login_host == host):
        here = request.get_full_path()
    return redirect_to_login(here, login_url, redirect_field)


class HtmxLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's ``LoginRequiredMiddleware``, aware of htmx (see ``to_login``)."""

    # Django returns any response from here; its stubs say a redirect.
    def handle_no_permission(  # type: ignore[override]
        self, request: HttpRequest, view_func: Any
    ) -> HttpResponse:
        return to_login(
            request, self.get_login_url(view_func), self.get_redirect_field_name(view_func)
        )


class StatementTimeoutMiddleware:
    """Run the views of the dashboard, and the admin's of this app, under a statement
    timeout.

    A page whose query runs out answers 503 with a page that says so, rather than
    holding a server thread and the database as long as the query would take. An htmx
    request (a live refresh, an action) gets the message in the page's alert area.
    It must come last among the middleware: it calls those views itself, so no other
    middleware's ``process_exception`` sees their errors and ``ATOMIC_REQUESTS`` does
    not wrap them (they need neither: each action is one client-API modification).
    """

    namespace = "queues"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def applies_to(self, namespace: str, url_name: str) -> bool:
        """Return whether the view is the dashboard's, or the admin's for this app's
        models (``admin:queues_task_changelist``): a host project's other views keep
        their own middleware and ``ATOMIC_REQUESTS``."""
        if namespace == "admin":
            return url_name.startswith(f"{self.namespace}_")
        return namespace == self.namespace

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or not self.applies_to(match.namespace, match.url_name or ""):
            return None
        seconds = app_settings().DASHBOARD_STATEMENT_SECONDS
        try:
            with statement_timeout(seconds):
                response = view_func(request, *view_args, **view_kwargs)
                # The admin's lazy querysets run as its template renders: render here.
                if isinstance(response, SimpleTemplateResponse):
                    response.render()
                return response
        except OperationalError as error:
            if not is_timeout(error):
                raise
        htmx = getattr(request, "htmx", None)
        template = "queues/timeout.html#alert" if htmx else "queues/timeout.html"
        response = render(request, template, {"seconds": seconds}, status=503)
        response["Retry-After"] = "5"
        if htmx:
            response["HX-Retarget"] = "#alerts"
            response["HX-Reswap"] = "innerHTML"
        return response


# The session's key of the time (seconds since the epoch) of its latest activity.
LAST_ACTIVITY_KEY = "entroq_last_activity"


class IdleSessionMiddleware:
    """End a logged-in session after ``SESSION_COOKIE_AGE`` seconds without activity.

    Activity is any request of the session but a live refresh: an htmx GET that a
    region sends for itself (``HX-Trigger`` names its ``HX-Target``), as the queues
    overview and the claims do every few seconds, and a running bulk run's page as
    often as the overview may. A screen left open and unwatched is what the timeout is
    for, so its refreshes do not keep the session alive; a click, a filter, a page or an
    action does. Whoever comes back to an ended session is sent to log in again.

    The time of the latest activity is kept in the session and written at most once a
    minute (each write is a database write). The write also moves the session's
    expiry, so the database forgets a session that timed out, and the browser its
    cookie, whatever happens here; the check here still ends a session that some other
    write kept alive. A session may so end up to a minute before the idle time is over.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        idle = settings.SESSION_COOKIE_AGE
        now = time.time()
        last = session.get(LAST_ACTIVITY_KEY) if SESSION_KEY in session else None
        if last is not None and now - last > idle:
            logout(request)  # before the view, which then sees nobody logged in
        response = self.get_response(request)
        if SESSION_KEY in session:
            last = session.get(LAST_ACTIVITY_KEY)
            if last is None or (not _live_refresh(request) and now - last >= min(60, idle / 10)):
                session[LAST_ACTIVITY_KEY] = int(now)
        return response


def _live_refresh(request: HttpRequest) -> bool:
    """Return whether ``request`` is a region of a page reloading itself (htmx)."""
    trigger = request.headers.get("HX-Trigger")
    return (
        request.method == "GET"
        and request.headers.get("HX-Request") == "true"
        and trigger is not None
        and trigger == request.headers.get("HX-Target")
    )
