"""The app's settings, read from ``settings.ENTROQ`` (a dict) with defaults."""

from typing import Any

from django.conf import settings

from queues.entroq.tasks import DEFAULT_MAX_VALUE_BYTES

DEFAULTS: dict[str, Any] = {
    # The largest task value stored, in bytes.
    "MAX_VALUE_BYTES": DEFAULT_MAX_VALUE_BYTES,
    # On PostgreSQL, run the claim and delete statements as prepared statements.
    # Turn off behind a pooler that cannot carry them (PgBouncer in transaction mode
    # before 1.21).
    "PREPARE_STATEMENTS": True,
}


def get(name: str) -> Any:
    """Return the ENTROQ setting ``name``, or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown ENTROQ setting {name!r}")
    return getattr(settings, "ENTROQ", {}).get(name, DEFAULTS[name])
