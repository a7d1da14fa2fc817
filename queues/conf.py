"""The app's settings, read from ``settings.ENTROQ`` (a dict) with typed defaults.

``app_settings().API_MAX_WAIT_SECONDS`` is a float whatever the dict holds; a setting
this version does not know is reported by the system check ``queues.W001``.
"""

import functools
import math
import os
from dataclasses import dataclass, fields
from typing import Any, get_args

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from queues.entroq.tasks import DEFAULT_MAX_VALUE_BYTES

ON = frozenset({"1", "true", "yes", "on"})
OFF = frozenset({"", "0", "false", "no", "off"})


def truthy(value: object) -> bool:
    """Return ``value`` as a switch: as text, "1", "true", "yes" and "on" are on and
    "0", "false", "no", "off" and "" off; anything else is refused (``ValueError``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ON | OFF:
        raise ValueError(f"{value!r} is neither on (1, true, yes, on) nor off (0, false, no, off)")
    return text in ON


@dataclass(frozen=True)
class AppSettings:
    """The app's settings: ``settings.ENTROQ`` over these defaults, each of its type."""

    # The largest task value stored, in bytes.
    MAX_VALUE_BYTES: int = DEFAULT_MAX_VALUE_BYTES
    # On PostgreSQL, run the claim and delete statements as prepared statements.
    # Turn off behind a pooler that cannot carry them (PgBouncer in transaction mode
    # before 1.21).
    PREPARE_STATEMENTS: bool = True
    # The dashboard's live refresh: the default period, and the shortest allowed.
    DASHBOARD_REFRESH_SECONDS: int = 5
    DASHBOARD_MIN_REFRESH_SECONDS: int = 2
    # Tasks on one page of a queue (a page may ask for 10 to 500).
    DASHBOARD_PAGE_SIZE: int = 50
    # Queues on a page of the overview (a page renders in time whatever the count).
    DASHBOARD_QUEUES_PER_PAGE: int = 100
    # A queue stands out when a task has been claimed this often (a crash loop)...
    DASHBOARD_WARN_CLAIMS: int = 5
    # ...or when its oldest available task has waited this many seconds.
    DASHBOARD_WARN_AGE_SECONDS: float = 300
    # Any one query of a dashboard or admin page is stopped after this many seconds,
    # and the page says so.
    DASHBOARD_STATEMENT_SECONDS: float = 5.0
    # ...but the shared stats snapshot, one scan of the table for every viewer, may
    # take this long (meanwhile viewers see the previous one).
    DASHBOARD_SNAPSHOT_SECONDS: float = 60.0
    # A search of values reads at most this many tasks a page, for at most so long.
    DASHBOARD_SEARCH_SCAN: int = 10_000
    DASHBOARD_SEARCH_SECONDS: float = 2.0
    # Values up to this size are shown inline; larger ones only download.
    DASHBOARD_INLINE_VALUE_BYTES: int = 256 * 1024
    # The longest an API claim waits for a task before answering "none".
    API_MAX_WAIT_SECONDS: float = 30
    # Claims one server process holds waiting at once, and of those, claims of one
    # token. None: half the process's threads (gunicorn's `threads`, which
    # entroq_site/gunicorn.conf.py passes on as ENTROQ_SERVER_THREADS; 32 when
    # unknown), and half of that for a token. A claim beyond either is tried at once
    # and, finding nothing, answered 429 with Retry-After, so waiting claims never
    # hold every thread.
    API_MAX_WAITING_CLAIMS: int | None = None
    API_MAX_WAITING_CLAIMS_PER_TOKEN: int | None = None
    # The Retry-After, in seconds, of a claim answered 429 for those bounds.
    API_CLAIM_RETRY_AFTER_SECONDS: float = 1
    # The most value bytes one API listing carries (a task larger than this comes
    # alone); the answer's "next" says how to ask for the rest.
    API_LIST_VALUE_BYTES: int = 8 * 1024 * 1024
    # The largest API request body: one value of MAX_VALUE_BYTES as base64 (a third
    # larger) and some room.
    API_MAX_BODY_BYTES: int = 16 * 1024 * 1024
    # Any one query of an API request is stopped after this many seconds (503 with
    # Retry-After), so that no request holds a server thread and the database for long.
    API_STATEMENT_SECONDS: float = 10.0
    # An API token, and its user's permissions, are looked up again after this long:
    # revoking a token or taking a role away reaches every process within it.
    API_TOKEN_CACHE_SECONDS: float = 5
    # Bulk runs pause this long between chunks of 500 tasks, so that the queues' own
    # workers keep the database.
    BULK_PAUSE_SECONDS: float = float(os.environ.get("ENTROQ_BULK_PAUSE_SECONDS", "0.05"))
    # A bulk action on this many tasks or more asks the operator to type the count.
    BULK_TYPED_CONFIRM: int = 1000
    # What operators delete (from the dashboard, a bulk run or manage.py eq rm/clear)
    # is kept this long so that it can be undone, then pruned by the bulk-run worker;
    # 0 keeps nothing. Workers' own deletions are never kept.
    KEEP_DELETED_SECONDS: float = 86400
    # Queue sizes on /metrics are at most this old, whoever scrapes.
    METRICS_CACHE_SECONDS: float = 10
    # When set, /metrics answers only requests with "Authorization: Bearer <it>".
    METRICS_BEARER_TOKEN: str = os.environ.get("ENTROQ_METRICS_TOKEN", "")
    # Without a token, /metrics (which names every queue) answers anyone only while
    # debugging, or when this opens it on purpose (for a network of your own).
    METRICS_ALLOW_ANONYMOUS: bool = truthy(os.environ.get("ENTROQ_METRICS_ALLOW_ANONYMOUS", ""))

    def __post_init__(self) -> None:
        # Settings often come from the environment as text: "5" is read as 5, and a
        # value that is not of its setting's kind is named rather than failing later.
        for field in fields(self):
            value = getattr(self, field.name)
            kinds = get_args(field.type) or (field.type,)
            if value is None and type(None) in kinds:
                continue
            try:
                converted = _convert(value, kinds[0])
            except (TypeError, ValueError) as error:
                raise ImproperlyConfigured(
                    f"settings.ENTROQ[{field.name!r}] must be {kinds[0].__name__}, "
                    f"not {value!r} ({error})"
                ) from None
            object.__setattr__(self, field.name, converted)
        if self.KEEP_DELETED_SECONDS < 0:
            raise ImproperlyConfigured(
                "settings.ENTROQ['KEEP_DELETED_SECONDS'] must not be negative (0 keeps nothing)"
            )


def _convert(value: object, kind: type) -> object:
    """Return ``value`` as ``kind``, refusing what would change its meaning."""
    if kind is bool:
        return truthy(value)
    if kind is str:
        if not isinstance(value, str):  # None would become the text "None"
            raise TypeError("expected text")
        return value
    if isinstance(value, bool) or value is None:
        raise TypeError("expected a number")
    number = float(value) if isinstance(value, str) else value
    if not isinstance(number, int | float) or math.isnan(number):
        raise TypeError("expected a number")
    if kind is int:
        if number != int(number):
            raise ValueError("expected a whole number")
        return int(number)
    return float(number)


KNOWN = frozenset(field.name for field in fields(AppSettings))


@functools.cache
def app_settings() -> AppSettings:
    """Return the app's settings (read again after ``settings.ENTROQ`` changes)."""
    given = getattr(settings, "ENTROQ", {})
    return AppSettings(**{name: value for name, value in given.items() if name in KNOWN})


@receiver(setting_changed)
def _forget(setting: str, **kwargs: Any) -> None:
    if setting == "ENTROQ":
        app_settings.cache_clear()
