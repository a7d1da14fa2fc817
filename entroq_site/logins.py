"""The login throttle's hooks (django-axes, configured in ``entroq_site/settings.py``):
whose address a login comes from, and what a locked-out login gets."""

from __future__ import annotations

import ipaddress
from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


def client_address(request: HttpRequest) -> str | None:
    """Return the address a request comes from, for the login throttle (django-axes's
    ``AXES_CLIENT_IP_CALLABLE``).

    It is the connection's (``REMOTE_ADDR``) unless ``settings.TRUSTED_PROXY_COUNT``
    proxies stand in front of the site, each appending the address it was reached from
    to ``X-Forwarded-For``: then it is the entry the farthest of them appended. Entries
    before that one are the client's own to write, and are never read; a request that
    passed fewer proxies, or whose entry is not an address, counts as coming from the
    nearest proxy.
    """
    remote: str | None = request.META.get("REMOTE_ADDR")
    proxies: int = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    header: str = request.META.get("HTTP_X_FORWARDED_FOR", "")
    forwarded = [entry.strip() for entry in header.split(",")] if header.strip() else []
    if len(forwarded) < proxies:
        return remote
    try:
        return str(ipaddress.ip_address(forwarded[-proxies]))
    except ValueError:
        return remote


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None,
    credentials: dict[str, Any] | None,
) -> HttpResponse:
    """Answer a login that the throttle refused (django-axes's ``AXES_LOCKOUT_CALLABLE``):
    the login page, saying for how long logging in is locked, with status 429 and
    ``Retry-After``.

    The dashboard's login and the admin's both answer so. The page is the same whatever
    the account, existing or not, and whichever of the account and the address is
    locked: it names neither.
    """
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    # Where the login would have gone, checked as the login view checks it.
    redirect = request.POST.get("next", request.GET.get("next", ""))
    if not url_has_allowed_host_and_scheme(
        redirect, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        redirect = ""
    context = {
        "form": AuthenticationForm(request),
        "next": redirect,
        "locked_out": True,
        "locked_for": _duration(seconds) if seconds else "",
    }
    response = render(request, "registration/login.html", context, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response


def _duration(seconds: int) -> str:
    """Return ``seconds`` in words: "12 hours", "15 minutes", "90 seconds"."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"
