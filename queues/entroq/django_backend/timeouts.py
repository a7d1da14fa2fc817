"""``statement_timeout`` and ``is_timeout``: a bound on how long statements may run.

Not only the backend's: the middleware, the API and the stats snapshots bound their
queries with it too. How a database cancels a statement is its dialect's
(``PostgresDialect.statement_timeout``, ``SQLiteDialect.statement_timeout``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections

from .base import Dialect
from .dialects import DIALECTS

# sqlstate of a statement PostgreSQL cancelled at its statement_timeout.
QUERY_CANCELED = "57014"


@contextlib.contextmanager
def statement_timeout(seconds: float, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Cancel each statement on ``using`` that runs longer than ``seconds`` meanwhile.

    The statement raises ``django.db.OperationalError``, which ``is_timeout`` tells
    apart. On PostgreSQL this is ``statement_timeout`` (put back afterwards: the
    connection outlives the request); SQLite's progress handler does the same.
    """
    connection = connections[using]
    connection.ensure_connection()
    with DIALECTS.get(connection.vendor, Dialect).statement_timeout(connection, seconds):
        yield


def is_timeout(error: BaseException) -> bool:
    """Return whether ``error`` is a statement ``statement_timeout`` cancelled."""
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) == QUERY_CANCELED or str(cause) == "interrupted"
