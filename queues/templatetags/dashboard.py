"""Template helpers of the dashboard: times in words, short IDs, links that keep filters."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote

from django import template
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import RFC3986_SUBDELIMS, urlencode

register = template.Library()

UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


@register.filter
def duration(seconds: float | None) -> str:
    """Return a duration in words with at most two units: "3 min 20 s", "2 d 4 h"."""
    if seconds is None:
        return ""
    remaining = round(abs(seconds))
    if remaining == 0:
        return "0 s" if abs(seconds) < 0.5 else "1 s"
    parts = []
    for unit, size in UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


@register.filter
def since(moment: datetime | None, now: datetime) -> str:
    """Return "12 s ago" or "in 3 min" for ``moment`` relative to ``now``."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    return f"{duration(seconds)} ago" if seconds >= 0 else f"in {duration(seconds)}"


@register.filter
def until(moment: datetime, now: datetime) -> float:
    """Return the seconds from ``now`` to ``moment`` (negative once past)."""
    return (moment - now).total_seconds()


@register.filter
def short(id: uuid.UUID | None) -> str:
    """Return the first 8 hex digits of an ID: enough to tell tasks apart on a page."""
    return "" if id is None else id.hex[:8]


@register.filter
def queue_url(name: str) -> str:
    """Return the URL of a queue's page: the name as the path, unless a segment of it is
    "." or "..", which browsers resolve away; then the name goes in ``?name=``."""
    if any(part in (".", "..") for part in name.split("/")):
        return reverse("queues:queue_named") + "?" + urlencode({"name": name})
    # As reverse() quotes a path, without its cost on pages of a thousand queues.
    return _queue_path_prefix() + quote(name, safe=RFC3986_SUBDELIMS + "/~:@")


@functools.cache
def _queue_path_prefix() -> str:
    return reverse("queues:queue", kwargs={"name": "x"}).removesuffix("x")


@register.filter
def count(number: int) -> str:
    """Return ``number`` with thousands separators (humanize's intcomma, much faster)."""
    return f"{int(number):,}"


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, "")


@register.simple_tag(takes_context=True)
def query(context: dict[str, Any], **changes: Any) -> str:
    """Return ``?`` and the current query string with ``changes`` (empty values drop)."""
    request: HttpRequest = context["request"]
    params = request.GET.copy()
    for key, value in changes.items():
        params.pop(key, None)
        if value not in (None, ""):
            params[key] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"
