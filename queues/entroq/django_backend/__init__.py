"""``DjangoBackend``: tasks in the project's database (PostgreSQL or SQLite).

The rooms, as Django keeps ``db/backends/<vendor>/operations.py`` behind
``connection.ops``:

- ``backend``: ``DjangoBackend``, what is the same on every database;
- ``base``: ``Dialect``, what the backend asks of a database;
- ``postgresql``, ``sqlite``: one dialect each, with everything that differs;
- ``dialects``: which dialect serves a database;
- ``listings``: what the backend reads without changing (tasks, stats, value search);
- ``sql``: the table and the statements both databases share;
- ``timeouts``: ``statement_timeout`` and ``is_timeout``, for any query;
- ``outages``: ``DatabaseUnavailable`` and which errors mean one.

The names other modules import from ``queues.entroq.django_backend`` stay here.
"""

from __future__ import annotations

from .backend import RETRIES, DjangoBackend
from .base import Dialect
from .dialects import DIALECTS
from .outages import UNAVAILABLE_SQLSTATE_CLASSES, UNAVAILABLE_SQLSTATES, DatabaseUnavailable
from .postgresql import (
    INSERT_BYTES,
    INSERT_ROWS,
    POSTGRES_CLAIM,
    POSTGRES_INSERT,
    RETRY_SQLSTATES,
    PostgresDialect,
)
from .sql import (
    COLUMNS,
    COLUMNS_NO_VALUE,
    DELETE_ONE,
    LOCK_BATCH,
    NOTIFY_CHANNEL,
    STATE_CONDITIONS,
    TASK_TABLE,
    prefix_range,
)
from .sqlite import SQLiteDialect
from .timeouts import QUERY_CANCELED, is_timeout, statement_timeout

__all__ = [
    "COLUMNS",
    "COLUMNS_NO_VALUE",
    "DELETE_ONE",
    "DIALECTS",
    "INSERT_BYTES",
    "INSERT_ROWS",
    "LOCK_BATCH",
    "NOTIFY_CHANNEL",
    "POSTGRES_CLAIM",
    "POSTGRES_INSERT",
    "QUERY_CANCELED",
    "RETRIES",
    "RETRY_SQLSTATES",
    "STATE_CONDITIONS",
    "TASK_TABLE",
    "UNAVAILABLE_SQLSTATES",
    "UNAVAILABLE_SQLSTATE_CLASSES",
    "DatabaseUnavailable",
    "Dialect",
    "DjangoBackend",
    "PostgresDialect",
    "SQLiteDialect",
    "is_timeout",
    "prefix_range",
    "statement_timeout",
]
