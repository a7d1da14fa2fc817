"""Middleware of the dashboard."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.http.response import HttpResponseRedirectBase
from django_htmx.http import HttpResponseClientRedirect


class HtmxLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's ``LoginRequiredMiddleware``, aware of htmx.

    When a session ends under a live refresh or an action, htmx would swap the login
    page into a region of the dashboard; instead the whole page goes to the login,
    which then returns to the page the browser showed.
    """

    # Django returns any response from here; its stubs say a redirect.
    def handle_no_permission(  # type: ignore[override]
        self, request: HttpRequest, view_func: Any
    ) -> HttpResponseRedirectBase:
        htmx = getattr(request, "htmx", None)
        if not htmx:
            return super().handle_no_permission(request, view_func)
        shown = urlsplit(htmx.current_url or "")
        path = shown.path + (f"?{shown.query}" if shown.query else "") or "/"
        login = redirect_to_login(
            path, self.get_login_url(view_func), self.get_redirect_field_name(view_func)
        )
        return HttpResponseClientRedirect(login["Location"])
