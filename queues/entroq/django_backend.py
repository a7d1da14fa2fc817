"""``DjangoBackend``: tasks in the project's database (PostgreSQL or SQLite).

The hot paths (claim, delete) are single lean SQL statements sent through Django's
cursor; the ORM model in ``queues.models`` owns the schema and serves the dashboard.
Every comparison with "now" uses the database's clock: ``statement_timestamp()`` on
PostgreSQL (not ``now()``, which stands still for a whole transaction, and a caller's
transaction may be long), and
on SQLite, which runs inside this process, the host's clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import random
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, TypeVar

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    Error,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.db.backends.base.base import BaseDatabaseWrapper

from .backend import CLAIM_CANDIDATES, Backend, ClaimQuery, Notifier, QueuesQuery, TasksQuery
from .departures import DEPARTURES_TABLE, DepartureCounts
from .errors import BackendUnavailable, DependencyError
from .kinds import error_kind
from .modify import Modification, TaskChange, inserted_task
from .tasks import QueueStat, Task, utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")

TASK_TABLE = "entroq_task"
COLUMNS = "id, queue, version, at, claimant, claims, value, created, modified, attempt, err"
COLUMNS_NO_VALUE = COLUMNS.replace("value", "NULL")
STATE_CONDITIONS = {
    "available": "at <= {now}",
    "claimed": "at > {now} AND claimant IS NOT NULL",
    "future": "at > {now} AND claimant IS NULL",
}
# A bulk insert sends at most this many rows, and about this many value bytes, in one
# statement (PostgreSQL refuses parameters over 1 GB).
INSERT_ROWS = 10_000
INSERT_BYTES = 64 * 1024 * 1024
# Serialization failures, deadlocks, and a concurrent insert of the same explicit ID
# (the retry then reports the collision properly).
RETRY_SQLSTATES = {"40001", "40P01", "23505"}
RETRIES = 8
# IDs a modification locks in one statement.
LOCK_BATCH = 1000
NOTIFY_CHANNEL = "entroq"


def _batches(tasks: list[Task]) -> Iterator[list[Task]]:
    """Split ``tasks`` into batches of at most INSERT_ROWS rows and about INSERT_BYTES."""
    batch: list[Task] = []
    size = 0
    for task in tasks:
        if batch and (len(batch) >= INSERT_ROWS or size + len(task.value) > INSERT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(task)
        size += len(task.value)
    if batch:
        yield batch


# One statement: lock one of the oldest available tasks of a random queue that has
# any, skipping rows other claims hold, and claim it. A row that a concurrent claim
# locked and committed first is re-checked and dropped (its ``at`` moved on).
POSTGRES_CLAIM = f"""
    WITH q AS (
        SELECT name, random() AS queue_rank FROM unnest(%(queues)s::text[]) AS name
    ), candidates AS MATERIALIZED (
        SELECT c.id, q.queue_rank, random() AS task_rank
        FROM q CROSS JOIN LATERAL (
            SELECT id FROM {TASK_TABLE}
            WHERE queue = q.name AND at <= statement_timestamp()
            ORDER BY at LIMIT {CLAIM_CANDIDATES}
        ) AS c
    ), picked AS (
        SELECT t.id FROM candidates JOIN {TASK_TABLE} AS t ON t.id = candidates.id
        WHERE t.at <= statement_timestamp()
        ORDER BY candidates.queue_rank, candidates.task_rank
        LIMIT 1
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE {TASK_TABLE} AS t
    SET version = t.version + 1, claims = t.claims + 1, claimant = %(claimant)s,
        at = statement_timestamp() + make_interval(secs => %(duration)s),
        modified = statement_timestamp()
    FROM picked WHERE t.id = picked.id
    RETURNING {", ".join("t." + c for c in COLUMNS.split(", "))}
"""
POSTGRES_INSERT = f"""
    INSERT INTO {TASK_TABLE} ({COLUMNS}, err_kind)
    SELECT id, queue, 0, at, %(claimant)s, 0, value, %(now)s, %(now)s, attempt, err, err_kind
    FROM unnest(%(ids)b::uuid[], %(queues)b::text[], %(ats)b::timestamptz[],
                %(values)b::bytea[], %(attempts)b::int[], %(errs)b::text[],
                %(kinds)b::text[])
        AS new(id, queue, at, value, attempt, err, err_kind)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""
# Delete one task version unless another claimant holds it; ``{now}`` is the clock.
DELETE_ONE = (
    f"DELETE FROM {TASK_TABLE} WHERE id = %(id)s AND version = %(version)s "
    "AND (claimant IS NULL OR claimant = %(me)s OR at <= {now}) RETURNING queue"
)


# sqlstate of a statement PostgreSQL cancelled at its statement_timeout.
QUERY_CANCELED = "57014"
# The SQLite progress handler in force on each connection, for nested timeouts.
_progress_handlers: weakref.WeakKeyDictionary[BaseDatabaseWrapper, Callable[[], bool] | None]
_progress_handlers = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def statement_timeout(seconds: float, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Cancel each statement on ``using`` that runs longer than ``seconds`` meanwhile.

    The statement raises ``django.db.OperationalError``, which ``is_timeout`` tells
    apart. On PostgreSQL this is ``statement_timeout`` (put back afterwards: the
    connection outlives the request); SQLite's progress handler does the same.
    """
    connection = connections[using]
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        from psycopg.pq import TransactionStatus

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('statement_timeout'), "
                "set_config('statement_timeout', %s, false)",
                [f"{max(1, round(seconds * 1000))}ms"],
            )
            previous = cursor.fetchone()[0]
        try:
            yield
        finally:
            raw = connection.connection
            # In a failed transaction the rollback to come undoes the setting; a closed
            # connection took it along.
            if raw is not None and raw.info.transaction_status != TransactionStatus.INERROR:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT set_config('statement_timeout', %s, false)", [previous]
                        )
                except Error:
                    # Never left to a later request with our timeout; and the error
                    # that brought us here, if any, is the one to report.
                    with contextlib.suppress(Error):
                        connection.close()
    elif connection.vendor == "sqlite":
        raw = connection.connection
        deadline = math.inf

        def timed(
            execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
        ) -> Any:
            # Armed until the next statement: rows are fetched after execute returns.
            nonlocal deadline
            deadline = time.monotonic() + seconds
            return execute(sql, params, many, context)

        outer = _progress_handlers.get(connection)
        handler = _progress_handlers[connection] = lambda: time.monotonic() > deadline
        raw.set_progress_handler(handler, 10_000)
        try:
            with connection.execute_wrapper(timed):
                yield
        finally:
            _progress_handlers[connection] = outer
            with contextlib.suppress(Exception):  # a closed connection has no handler
                raw.set_progress_handler(outer, 10_000 if outer else 0)
    else:
        yield


def is_timeout(error: BaseException) -> bool:
    """Return whether ``error`` is a statement ``statement_timeout`` cancelled."""
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) == QUERY_CANCELED or str(cause) == "interrupted"


class DatabaseUnavailable(BackendUnavailable, OperationalError):
    """The database dropped this thread's connection, or cannot be reached: try later.

    Both a ``BackendUnavailable`` (what every backend raises in an outage) and Django's
    ``OperationalError`` (what code written for Django catches).
    """


# What says the database cannot be used now, rather than that a statement is wrong:
# connection exceptions and insufficient resources (disk, memory, connections) by
# class; a session the server ended (an administrator, a crash, a restart), a server
# that went read-only (a failover), and conflicts that retries did not get past.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "25006", "40001", "40P01"}


def _is_outage(error: Error) -> bool:
    """Return whether ``error`` says the database cannot be used now, rather than that
    a statement failed.

    PostgreSQL: a sqlstate of ``UNAVAILABLE_SQLSTATE_CLASSES`` or
    ``UNAVAILABLE_SQLSTATES``, or none at all (the connection broke, or never opened:
    every error the server reports has one). SQLite: busy or locked past its busy
    timeout.
    """
    if isinstance(error, InterfaceError):
        return True
    cause = error.__cause__
    if isinstance(cause, sqlite3.Error):
        return str(getattr(cause, "sqlite_errorname", "")).startswith(
            ("SQLITE_BUSY", "SQLITE_LOCKED")
        )
    sqlstate = getattr(cause, "sqlstate", None)
    return (
        sqlstate is None
        or sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES)
        or sqlstate in UNAVAILABLE_SQLSTATES
    )


def _reconnecting[**P, R](
    method: Callable[Concatenate[DjangoBackend, P], R],
) -> Callable[Concatenate[DjangoBackend, P], R]:
    """Make ``method`` raise ``DatabaseUnavailable`` when the database cannot be used
    now, closing this thread's connection so that the next call connects anew.

    Django reconnects only between requests; a worker's thread has none. Inside the
    caller's transaction the connection is the caller's to deal with: the error goes
    to them as it came.
    """

    @functools.wraps(method)
    def reconnecting(backend: DjangoBackend, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(backend, *args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            connection = connections[backend.using]
            if (
                isinstance(error, DatabaseUnavailable)
                or connection.in_atomic_block
                or not _is_outage(error)
            ):
                raise
            with contextlib.suppress(Error):
                connection.close()
            raise DatabaseUnavailable(f"the database is unavailable: {error}") from error

    return reconnecting


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """Return the bounds ``[low, high)`` of the names that start with ``prefix`` in code
    point order (``high`` is None when no name is above them all)."""
    kept = prefix
    while kept:
        following = ord(kept[-1]) + 1
        if 0xD800 <= following <= 0xDFFF:  # surrogates are no characters of a name
            following = 0xE000
        if following <= 0x10FFFF:
            return prefix, kept[:-1] + chr(following)
        kept = kept[:-1]
    return prefix, None


class _Dialect:
    """What differs between databases: the clock, and how values travel."""

    def hot_cursor(self) -> Any:
        """Return the cursor for the claim and delete statements."""
        return connections[self.using].cursor()

    vendor = ""
    now = ""  # SQL for the database clock
    lock_share = ""  # share locks on the rows a modification depends on (SQLite has none)
    queue_order = "queue"  # by code point, as Python sorts (SQLite compares bytes)

    def __init__(self, using: str) -> None:
        # An alias, not a connection: Django's connections belong to one thread each.
        self.using = using
        self.delete_one = DELETE_ONE.format(now=self.now)

    def params(self) -> dict[str, Any]:
        """Return the parameters every statement may use."""
        return {}

    def sorts_by_code_point(self) -> bool:
        """Return whether queue names compare by code point (prefixes are then ranges)."""
        return True

    def db_uuid(self, value: uuid.UUID | None) -> Any:
        return value

    def db_time(self, value: datetime | None) -> Any:
        return value

    def read_uuid(self, value: Any) -> uuid.UUID:
        assert isinstance(value, uuid.UUID)
        return value

    def read_time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def in_list(self, column: str, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """Return SQL testing ``column`` against ``values``, as one parameter ``name``."""
        raise NotImplementedError

    def row_to_task(self, row: Sequence[Any]) -> Task:
        return Task(
            id=self.read_uuid(row[0]),
            queue=row[1],
            version=row[2],
            at=self.read_time(row[3]),
            claimant=None if row[4] is None else self.read_uuid(row[4]),
            claims=row[5],
            value=b"" if row[6] is None else bytes(row[6]),
            created=self.read_time(row[7]),
            modified=self.read_time(row[8]),
            attempt=row[9],
            err=row[10],
        )


class _Postgres(_Dialect):
    vendor = "postgresql"
    now = "statement_timestamp()"
    lock_share = "FOR SHARE"
    queue_order = 'queue COLLATE "C"'

    def __init__(self, using: str, *, prepare: bool) -> None:
        import psycopg

        super().__init__(using)
        self.prepare = prepare

        from psycopg.types.datetime import TimestamptzLoader

        class HotCursor(psycopg.Cursor[Any]):
            """Binds parameters on the server and, if asked, prepares what it runs."""

            def __init__(self, connection: Any) -> None:
                super().__init__(connection)
                # Django's loader for timestamptz is Python code run for every value;
                # psycopg's own (in C) gives the same aware datetimes, which
                # ``read_time`` turns into UTC.
                self.adapters.register_loader("timestamptz", TimestamptzLoader)

            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                kwargs.setdefault("prepare", prepare)
                return super().execute(query, params, **kwargs)

        self.cursor_class = HotCursor
        self.local = threading.local()

    def in_list(self, column: str, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        return f"{column} = ANY(%({name})s)", {name: list(values)}

    def sorts_by_code_point(self) -> bool:
        """Return whether the task table's queue column collates by code point: C,
        POSIX or C.UTF-8 (what ``make test`` and most images use), not a language's
        order, where the names that share a prefix are not one range."""
        found = _collations.get(self.using)
        if found is None:
            with connections[self.using].cursor() as cursor:
                cursor.execute(
                    "SELECT CASE WHEN c.collname = 'default' "
                    "THEN coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') "
                    "ELSE c.collprovider::text END, "
                    "CASE WHEN c.collname = 'default' THEN d.datcollate "
                    "ELSE c.collcollate END "
                    "FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
                    "JOIN pg_database d ON d.datname = current_database() "
                    "WHERE a.attrelid = %s::regclass AND a.attname = 'queue'",
                    [TASK_TABLE],
                )
                provider, collate = cursor.fetchone()
            found = provider in ("c", "d") and (
                collate in ("C", "POSIX") or str(collate).startswith("C.")
            )
            if not found:
                logger.warning(
                    "entroq: the task table's queue column collates as %s, so queue "
                    'prefixes are matched by a scan; ALTER its COLLATE to "C" to make '
                    "them ranges of the index",
                    collate,
                )
            _collations[self.using] = found
        return found

    def hot_cursor(self) -> Any:
        """Return a Django cursor for the claim, delete and bulk insert statements.

        Parameters are bound on the server, so arrays travel in binary; statements
        are prepared (planning the claim costs as much as running it, and a prepared
        statement plans once per connection). It is Django's cursor wrapper, so
        execute wrappers, query logging and error translation apply as to any query.
        """
        connection = connections[self.using]
        cached = getattr(self.local, "cursor", None)
        if (
            cached is not None
            and connection.connection is cached.cursor.connection
            and not connection.queries_logged
        ):
            return cached
        connection.ensure_connection()
        raw = connection.connection
        if self.prepare and raw.prepare_threshold is None:
            # Django turns psycopg's preparation off (None); an unreachable threshold
            # turns it on for explicit requests only, so other queries are unchanged.
            raw.prepare_threshold = 2**31 - 1
        if connection.queries_logged:
            # Logging is switched on and off at run time: a logging cursor is not kept.
            return connection.make_debug_cursor(self.cursor_class(raw))  # type: ignore[arg-type]
        # Kept for this thread and connection: a new cursor costs as much as a statement.
        self.local.cursor = connection.make_cursor(self.cursor_class(raw))  # type: ignore[arg-type]
        return self.local.cursor


class _SQLite(_Dialect):
    """SQLite keeps UUIDs as hex and times as UTC text, as Django's fields do.

    Times are always written with six fractional digits so that text order is time order.
    """

    vendor = "sqlite"
    now = "%(now)s"

    def params(self) -> dict[str, Any]:
        return {"now": self.db_time(utcnow())}

    def db_uuid(self, value: uuid.UUID | None) -> Any:
        return None if value is None else value.hex

    def db_time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_uuid(self, value: Any) -> uuid.UUID:
        return uuid.UUID(hex=value)

    def in_list(self, column: str, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        # One JSON parameter, however long the list (SQLite allows 32,766 parameters).
        return f"{column} IN (SELECT value FROM json_each(%({name})s))", {name: json.dumps(values)}

    def read_time(self, value: Any) -> datetime:
        # Table columns come back parsed (Django registers converters for the
        # declared type); computed ones, such as the clock, as text.
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC)


class _PgListener:
    """One ``LISTEN`` connection per process and database, feeding a ``Notifier``.

    When the connection drops, every waiter is woken (it may have missed a
    notification) and falls back to polling until the listener reconnects.
    """

    def __init__(self, connection: BaseDatabaseWrapper, notifier: Notifier) -> None:
        params = dict(connection.get_connection_params())
        for key in ("cursor_factory", "context", "prepare_threshold", "client_encoding"):
            params.pop(key, None)
        self.params = params
        self.notifier = notifier
        self.listening = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="entroq-listen", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**self.params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    self.notifier.notify_all()
                    backoff = 0.1
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.notifier.notify((note.payload,))
                    return
            except Exception as exc:
                logger.warning("entroq: LISTEN connection lost (%s); polling meanwhile", exc)
            self.listening.clear()
            self.notifier.notify_all()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


_shared_lock = threading.Lock()
_collations: dict[str, bool] = {}  # by database alias: whether queue names sort by code point
_departures: dict[tuple[str, int], DepartureCounts] = {}
_notifiers: dict[tuple[str, int], Notifier] = {}
_listeners: dict[tuple[str, int], _PgListener] = {}


class DjangoBackend(Backend):
    """Tasks in the Django database ``using`` (an alias of ``settings.DATABASES``).

    Needs the ``queues`` app installed and migrated. On SQLite the database must be
    configured with ``"transaction_mode": "IMMEDIATE"`` (and should use WAL and a busy
    timeout; see ``entroq_site/settings.py``) so that concurrent workers are correct.
    """

    supports_value_search = True

    def __init__(self, using: str = "default", *, max_value_bytes: int | None = None) -> None:
        from queues import conf

        self.using = using
        self.max_value_bytes = (
            int(conf.get("MAX_VALUE_BYTES")) if max_value_bytes is None else max_value_bytes
        )
        self._dialect: _Dialect | None = None

    @property
    def dialect(self) -> _Dialect:
        if self._dialect is None:
            connection = connections[self.using]
            if connection.vendor == "postgresql":
                from queues import conf

                self._dialect = _Postgres(self.using, prepare=bool(conf.get("PREPARE_STATEMENTS")))
            elif connection.vendor == "sqlite":
                mode = connection.settings_dict.get("OPTIONS", {}).get("transaction_mode")
                if str(mode).upper() != "IMMEDIATE":
                    from django.core.exceptions import ImproperlyConfigured

                    raise ImproperlyConfigured(
                        f"EntroQ on SQLite needs DATABASES[{self.using!r}]['OPTIONS']"
                        "['transaction_mode'] = 'IMMEDIATE' so that concurrent claims and "
                        "modifications take the write lock up front"
                    )
                self._dialect = _SQLite(self.using)
            else:
                raise NotImplementedError(
                    f"EntroQ supports PostgreSQL and SQLite, not {connection.vendor}"
                )
        return self._dialect

    @property
    def _key(self) -> tuple[str, int]:
        import os

        return (self.using, os.getpid())

    @property
    def notifier(self) -> Notifier:
        with _shared_lock:
            return _notifiers.setdefault(self._key, Notifier())

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def _retrying(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, again after a serialization failure, deadlock or busy lock.

        Inside the caller's transaction nothing is retried: the failure aborted their
        transaction, which only they can start again.
        """
        if connections[self.using].in_atomic_block:
            return operation()
        for attempt in range(RETRIES):
            try:
                return operation()
            except DatabaseError as exc:
                if attempt == RETRIES - 1 or not self._is_transient(exc):
                    raise
                logger.debug("entroq: retrying after %s", exc)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    def _is_transient(self, exc: DatabaseError) -> bool:
        # Not SQLite's "database is locked": it comes after the busy timeout has been
        # waited out already, and trying again would wait it out again and again.
        return getattr(exc.__cause__, "sqlstate", None) in RETRY_SQLSTATES

    # The clock.

    @_reconnecting
    def time(self) -> datetime:
        if self.dialect.vendor == "sqlite":
            return utcnow()
        return self.dialect.read_time(self._execute("SELECT statement_timestamp()", {})[0][0])

    # Claims.

    def try_claim(self, query: ClaimQuery) -> Task | None:
        return self.try_claim_or_arrival(query)[0]

    @_reconnecting
    def try_claim_or_arrival(self, query: ClaimQuery) -> tuple[Task | None, float | None]:
        # Each claim, found or not, reports what the worker finished since the last one.
        self.write_departures_when_due()
        claim = self._claim_postgres if self.dialect.vendor == "postgresql" else self._claim_sqlite
        # Under heavy contention every candidate may be taken by concurrent claims;
        # if tasks are still available, try again rather than report an empty queue.
        arrival = None
        for _ in range(3):
            task = self._retrying(lambda: claim(query))
            if task is not None:
                return task, None
            arrival = self.seconds_until_arrival(query.queues)
            if arrival is None or arrival > 0:
                break
        listener = self._listener()
        if listener is None or not listener.listening.is_set():
            # No word comes from other processes (SQLite cannot send it; PostgreSQL's
            # listener is down): look again at least every second.
            arrival = 1.0 if arrival is None else min(arrival, 1.0)
        return None, arrival

    def _claim_postgres(self, query: ClaimQuery) -> Task | None:
        params = {
            "queues": list(query.queues),
            "claimant": query.claimant,
            "duration": float(query.duration),
        }
        cursor = self.dialect.hot_cursor()
        cursor.execute(POSTGRES_CLAIM, params)
        row = cursor.fetchone()
        return self.dialect.row_to_task(row) if row else None

    def _claim_sqlite(self, query: ClaimQuery) -> Task | None:
        dialect = self.dialect
        queues = list(query.queues)
        random.shuffle(queues)
        with transaction.atomic(using=self.using):
            now = utcnow()
            for queue in queues:
                rows = self._execute(
                    f"SELECT id FROM {TASK_TABLE} WHERE queue = %(queue)s AND at <= %(now)s "
                    f"ORDER BY at LIMIT {CLAIM_CANDIDATES}",
                    {"queue": queue, "now": dialect.db_time(now)},
                )
                if rows:
                    claimed = self._execute(
                        f"UPDATE {TASK_TABLE} SET version = version + 1, claims = claims + 1, "
                        "claimant = %(claimant)s, at = %(until)s, modified = %(now)s "
                        f"WHERE id = %(id)s RETURNING {COLUMNS}",
                        {
                            "id": random.choice(rows)[0],
                            "claimant": dialect.db_uuid(query.claimant),
                            "until": dialect.db_time(now + timedelta(seconds=query.duration)),
                            "now": dialect.db_time(now),
                        },
                    )
                    return dialect.row_to_task(claimed[0])
        return None

    @_reconnecting
    def seconds_until_arrival(self, queues: Iterable[str]) -> float | None:
        names = list(queues)
        if self.dialect.vendor == "postgresql":
            rows = self._execute(
                f"""SELECT EXTRACT(EPOCH FROM min(first.at) - statement_timestamp())
                    FROM unnest(%(queues)s::text[]) AS name CROSS JOIN LATERAL (
                        SELECT at FROM {TASK_TABLE} WHERE queue = name ORDER BY at LIMIT 1
                    ) AS first""",
                {"queues": names},
            )
            return None if rows[0][0] is None else float(rows[0][0])
        where, params = self.dialect.in_list("queue", "q", names)
        rows = self._execute(f"SELECT min(at) FROM {TASK_TABLE} WHERE {where}", params)
        if rows[0][0] is None:
            return None
        return (self.dialect.read_time(rows[0][0]) - utcnow()).total_seconds()

    @contextlib.contextmanager
    def subscribe(self, queues: Iterable[str]) -> Iterator[threading.Event]:
        listener = self._listener()
        if listener is not None:
            # A claim subscribes before its first try; wait (briefly) until we listen
            # so that no insert between that try and the LISTEN goes unnoticed.
            listener.listening.wait(5)
        with self.notifier.subscribe(queues) as event:
            yield event

    def _listener(self) -> _PgListener | None:
        """Return this process's listener on PostgreSQL, starting it on first use."""
        if self.dialect.vendor != "postgresql":
            return None
        with _shared_lock:
            listener = _listeners.get(self._key)
            if listener is None:
                notifier = _notifiers.setdefault(self._key, Notifier())
                listener = _listeners[self._key] = _PgListener(connections[self.using], notifier)
        return listener

    # Modifications.

    @_reconnecting
    def modify(self, mod: Modification) -> tuple[list[Task], list[Task]]:
        mod.check(self.max_value_bytes)
        # The common end of a task's life, one deletion, is one conditional statement
        # whose row lock is its own. When it deletes nothing, the full path says why.
        lone_delete = len(mod.deletes) == 1 and not (mod.inserts or mod.changes or mod.depends)
        if lone_delete and self._retrying(lambda: self._delete_one(mod)):
            return [], []
        return self._retrying(lambda: self._modify(mod))

    def _delete_one(self, mod: Modification) -> bool:
        dialect = self.dialect
        target = mod.deletes[0]
        cursor = dialect.hot_cursor()
        cursor.execute(
            dialect.delete_one,
            {
                **dialect.params(),
                "id": dialect.db_uuid(target.id),
                "version": target.version,
                "me": dialect.db_uuid(mod.claimant),
            },
        )
        deleted = cursor.fetchone()
        if deleted is not None:
            self._departed([deleted[0]])
        return deleted is not None

    def _modify(self, mod: Modification) -> tuple[list[Task], list[Task]]:
        dialect = self.dialect
        with transaction.atomic(using=self.using):
            now_row = self._execute(f"SELECT {dialect.now}", dialect.params())[0][0]
            now = dialect.read_time(now_row)
            found, previous = self._lock(mod, now)
            error = mod.dependency_error(found)
            if error is not None:
                raise error
            if mod.deletes:
                where, params = dialect.in_list(
                    "id", "ids", [dialect.db_uuid(d.id) for d in mod.deletes]
                )
                self._execute(f"DELETE FROM {TASK_TABLE} WHERE {where}", params)
            changed = [self._change(change, mod.claimant, now) for change in mod.changes]
            inserted = self._insert(mod, now_row)
            wake = {t.queue for t in inserted}
            departed = [previous[d.id][0] for d in mod.deletes]
            for task in changed:
                old_queue, old_at = previous[task.id]
                # A waiter already knows when the old ``at`` comes; only a move or an
                # earlier arrival is news (renewals, the most common change, are not).
                if task.queue != old_queue or task.at < old_at:
                    wake.add(task.queue)
                if task.queue != old_queue:
                    departed.append(old_queue)
            self._notify(wake)
            self._departed(departed)
        return inserted, changed

    # Departures (see ``queues.entroq.departures``).

    @property
    def departures(self) -> DepartureCounts:
        """Return this process's unwritten departures from this database."""
        # By process too: a child forked with the parent's counts must not add them.
        key = (self.using, os.getpid())
        counts = _departures.get(key)
        return counts if counts is not None else _departures.setdefault(key, DepartureCounts())

    def _departed(self, queues: list[str]) -> None:
        """Count a departure from each of ``queues`` once the transaction commits."""
        if not queues:
            return
        counts = self.departures
        if not connections[self.using].in_atomic_block:  # committed already
            counts.add(queues)
            self.write_departures_when_due()
            return

        def count() -> None:
            counts.add(queues)
            self.write_departures_when_due()

        # Robust: the modification has committed; nothing here may fail it.
        transaction.on_commit(count, using=self.using, robust=True)

    def write_departures_when_due(self) -> None:
        """Write the departure counts if ``FLUSH_SECONDS`` have passed since the last
        write, and no transaction of the caller's could roll the write back."""
        if self.departures.due() and not connections[self.using].in_atomic_block:
            self.write_departures()

    def write_departures(self) -> None:
        """Add this process's departure counts to the departures table."""
        counts = self.departures
        taken = counts.take()
        if not taken:
            return
        dialect = self.dialect
        try:
            with transaction.atomic(using=self.using), connections[self.using].cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {DEPARTURES_TABLE} (queue, minute, count) VALUES (%s, %s, %s) "
                    f"ON CONFLICT (queue, minute) "
                    f"DO UPDATE SET count = {DEPARTURES_TABLE}.count + excluded.count",
                    # In one order in every process, so that concurrent writes never deadlock.
                    [(queue, dialect.db_time(minute), n) for queue, minute, n in sorted(taken)],
                )
        except Exception as exc:  # counts are never worth a failed claim or shutdown
            counts.put_back(taken)
            logger.warning("entroq: departures not written yet (%s)", exc)

    def _lock(
        self, mod: Modification, now: datetime
    ) -> tuple[dict[uuid.UUID, tuple[int, bool]], dict[uuid.UUID, tuple[str, datetime]]]:
        """Lock and read the rows ``mod`` refers to; return what the checks need.

        Rows to change or delete (and explicit insert IDs) are locked for update
        (Django's ``select_for_update``); rows only depended on are locked for share, so
        that many workers can depend on one configuration task at once. Both kinds are
        taken in one ID order, a run of IDs of one kind a statement, so that concurrent
        modifications of the same tasks queue up instead of deadlocking, however their
        changes and dependencies cross. SQLite has one writer at a time and no row locks.
        """
        exclusive = (
            {d.id for d in mod.inserts if d.id}
            | {c.id for c in mod.changes}
            | {d.id for d in mod.deletes}
        )
        ids = sorted(exclusive | {d.id for d in mod.depends})
        if not self.dialect.lock_share:
            runs: Iterable[tuple[bool, Iterable[uuid.UUID]]] = [(False, ids)]
        else:
            runs = itertools.groupby(ids, key=exclusive.__contains__)
        found: dict[uuid.UUID, tuple[int, bool]] = {}
        previous: dict[uuid.UUID, tuple[str, datetime]] = {}
        for for_update, run in runs:
            for task_id, version, claimant, at, queue in self._locked_rows(list(run), for_update):
                held = at > now and claimant is not None and claimant != mod.claimant
                found[task_id] = (version, held)
                previous[task_id] = (queue, at)
        return found, previous

    def _locked_rows(
        self, ids: list[uuid.UUID], for_update: bool
    ) -> Iterator[tuple[uuid.UUID, int, uuid.UUID | None, datetime, str]]:
        """Yield (id, version, claimant, at, queue) of the rows ``ids``, locked in ID
        order for update, or else for share (where the database has row locks)."""
        dialect = self.dialect
        for start in range(0, len(ids), LOCK_BATCH):
            batch = ids[start : start + LOCK_BATCH]
            if for_update:
                from queues.models import Task as TaskRow

                rows = (
                    TaskRow.objects.using(self.using)
                    .filter(id__in=batch)
                    .order_by("id")
                    .select_for_update()
                    .values_list("id", "version", "claimant", "at", "queue")
                )
                for task_id, version, claimant, at, queue in rows:
                    yield task_id, version, claimant, dialect.read_time(at), queue
                continue
            # Django's select_for_update has no FOR SHARE.
            where, params = dialect.in_list("id", "ids", [dialect.db_uuid(i) for i in batch])
            for row in self._execute(
                f"SELECT id, version, claimant, at, queue FROM {TASK_TABLE} "
                f"WHERE {where} ORDER BY id {dialect.lock_share}",
                params,
            ):
                claimant = None if row[2] is None else dialect.read_uuid(row[2])
                yield dialect.read_uuid(row[0]), row[1], claimant, dialect.read_time(row[3]), row[4]

    def _change(self, change: TaskChange, claimant: uuid.UUID | None, now: datetime) -> Task:
        dialect = self.dialect
        at = change.arrival(now)
        params: dict[str, Any] = {
            "id": dialect.db_uuid(change.id),
            "at": dialect.db_time(at),
            # A change into the future keeps (or takes) the claim; otherwise it releases.
            "claimant": dialect.db_uuid(claimant) if at > now else None,
            "now": dialect.db_time(now),
        }
        # Only what the change gives is written: an unchanged value (every renewal) is
        # neither sent nor rewritten, and absent fields keep what is stored.
        fields = {"queue": change.queue, "value": change.value, "attempt": change.attempt}
        if change.err is not None:
            fields.update(err=change.err, err_kind=error_kind(change.err))
        given = {column: new for column, new in fields.items() if new is not None}
        params.update(given)
        known = change.answered_value()
        rows = self._execute(
            f"UPDATE {TASK_TABLE} SET version = version + 1, "
            + "".join(f"{column} = %({column})s, " for column in given)
            + "at = %(at)s, claimant = %(claimant)s, modified = %(now)s "
            f"WHERE id = %(id)s RETURNING {COLUMNS if known is None else COLUMNS_NO_VALUE}",
            params,
        )
        changed = dialect.row_to_task(rows[0])
        return changed if known is None else dataclasses.replace(changed, value=known)

    def _insert(self, mod: Modification, now: Any) -> list[Task]:
        if not mod.inserts:
            return []
        dialect = self.dialect
        created = dialect.read_time(now)
        tasks = [inserted_task(data, mod.claimant, created) for data in mod.inserts]
        if dialect.vendor == "postgresql":
            for batch in _batches(tasks):
                # One statement of fixed text with an array a column, however many rows:
                # the server parses (and the client quotes) nothing per row. An explicit
                # ID that a concurrent transaction inserted first is skipped here and
                # reported below, even inside the caller's transaction.
                cursor = dialect.hot_cursor()
                cursor.execute(
                    POSTGRES_INSERT,
                    {
                        "ids": [t.id for t in batch],
                        "queues": [t.queue for t in batch],
                        "ats": [t.at for t in batch],
                        "values": [t.value for t in batch],
                        "attempts": [t.attempt for t in batch],
                        "errs": [t.err for t in batch],
                        "kinds": [error_kind(t.err) for t in batch],
                        "claimant": mod.claimant,
                        "now": created,
                    },
                )
                stored = {row[0] for row in cursor.fetchall()}
                if len(stored) != len(batch):
                    raise DependencyError(
                        inserts=[t.id_version() for t in batch if t.id not in stored]
                    )
        else:
            claimant = dialect.db_uuid(mod.claimant)
            with connections[self.using].cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {TASK_TABLE} ({COLUMNS}, err_kind) VALUES "
                    "(%s, %s, 0, %s, %s, 0, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            dialect.db_uuid(t.id),
                            t.queue,
                            dialect.db_time(t.at),
                            claimant,
                            t.value,
                            now,
                            now,
                            t.attempt,
                            t.err,
                            error_kind(t.err),
                        )
                        for t in tasks
                    ],
                )
        return tasks

    def _notify(self, queues: set[str]) -> None:
        if not queues:
            return
        if self.dialect.vendor == "postgresql":
            # Delivered at commit, once per queue and transaction (PostgreSQL folds
            # duplicates), to every listening process, this one included.
            self._execute(
                "SELECT pg_notify(%(channel)s, name) FROM unnest(%(queues)s::text[]) AS name",
                {"channel": NOTIFY_CHANNEL, "queues": sorted(queues)},
            )
        else:
            notifier = self.notifier
            transaction.on_commit(lambda: notifier.notify(queues), using=self.using)

    # Listings.

    @_reconnecting
    def tasks(self, query: TasksQuery) -> list[Task]:
        dialect = self.dialect
        params = dialect.params()
        conditions = []
        if query.queue:
            conditions.append("queue = %(queue)s")
            params["queue"] = query.queue
        if query.ids:
            where, id_params = dialect.in_list("id", "id", [dialect.db_uuid(i) for i in query.ids])
            conditions.append(where)
            params.update(id_params)
        if query.claimant is not None:
            conditions.append(f"(at <= {dialect.now} OR claimant = %(claimant)s)")
            params["claimant"] = dialect.db_uuid(query.claimant)
        if query.state:
            conditions.append(STATE_CONDITIONS[query.state].format(now=dialect.now))
        if query.min_attempt:
            conditions.append("attempt >= %(min_attempt)s")
            params["min_attempt"] = query.min_attempt
        if query.omit_values:
            columns = COLUMNS_NO_VALUE
        elif query.preview > 0:
            columns = COLUMNS.replace("value", f"substr(value, 1, {int(query.preview)})")
        else:
            columns = COLUMNS
        if not query.ids:
            # Row values, so both databases walk the (queue, at, id) index from the bound.
            for name, bound, op in (("after", query.after, ">"), ("before", query.before, "<")):
                if bound is not None:
                    conditions.append(f"(at, id) {op} (%({name}_at)s, %({name}_id)s)")
                    params[f"{name}_at"] = dialect.db_time(bound[0])
                    params[f"{name}_id"] = dialect.db_uuid(bound[1])
        sql = f"SELECT {columns} FROM {TASK_TABLE} WHERE {' AND '.join(conditions)}"
        if not query.ids:
            sql += " ORDER BY at DESC, id DESC" if query.newest_first else " ORDER BY at, id"
            if query.limit > 0:
                sql += f" LIMIT {int(query.limit)}"
        tasks = [dialect.row_to_task(row) for row in self._execute(sql, params)]
        if query.ids:
            by_id = {t.id: t for t in tasks}
            tasks = [by_id[i] for i in dict.fromkeys(query.ids) if i in by_id]
            if query.limit > 0:
                tasks = tasks[: query.limit]
        return tasks

    @_reconnecting
    def queue_stats(self, query: QueuesQuery) -> dict[str, QueueStat]:
        dialect = self.dialect
        params = dialect.params()
        matches = []
        if query.match_exact:
            where, exact = dialect.in_list("queue", "exact", list(query.match_exact))
            matches.append(where)
            params.update(exact)
        if "" in query.match_prefix:
            matches = []  # every queue
        elif query.match_prefix and dialect.sorts_by_code_point():
            # A range of the (queue, at, id) index, not a scan of it: the names that
            # start with a prefix are those from it up to the next name of its length.
            for i, prefix in enumerate(query.match_prefix):
                low, high = prefix_range(prefix)
                above = "" if high is None else f" AND queue < %(high{i})s"
                matches.append(f"(queue >= %(low{i})s{above})")
                params.update({f"low{i}": low, f"high{i}": high})
        else:
            for i, prefix in enumerate(query.match_prefix):
                # Not LIKE: it treats % and _ as wildcards, and ignores case on SQLite.
                matches.append(f"substr(queue, 1, length(%(p{i})s)) = %(p{i})s")
                params[f"p{i}"] = prefix
        sql = (
            f"SELECT queue, count(*), "
            f"sum(CASE WHEN at <= {dialect.now} THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN at > {dialect.now} AND claimant IS NOT NULL THEN 1 ELSE 0 END), "
            f"max(claims), min(at) FROM {TASK_TABLE}"
        )
        if matches:
            sql += f" WHERE {' OR '.join(matches)}"
        sql += f" GROUP BY queue ORDER BY {dialect.queue_order}"
        if query.limit > 0:
            sql += f" LIMIT {int(query.limit)}"
        stats = {}
        for name, size, available, claimed, max_claims, earliest in self._execute(sql, params):
            stats[name] = QueueStat(
                name=name,
                size=size,
                claimed=int(claimed),
                available=int(available),
                future=size - int(available) - int(claimed),
                max_claims=max_claims,
                earliest=dialect.read_time(earliest),
            )
        return stats

    @_reconnecting
    def search_values(
        self,
        queue: str,
        needle: bytes,
        *,
        after: tuple[datetime, uuid.UUID] | None = None,
        scan: int = 10_000,
        limit: int = 50,
        timeout: float = 2.0,
    ) -> tuple[list[Task], tuple[datetime, uuid.UUID] | None]:
        """Return tasks of ``queue`` whose value contains ``needle`` (values cut to 160
        bytes), reading no more than ``scan`` tasks after ``after`` in (at, id) order.

        Also return where the search stopped when it stopped early, at ``limit``
        matches or at ``scan`` tasks read (None when it read to the end of the queue).
        One statement reads the window, so what it reports is one snapshot. It runs
        under a ``statement_timeout`` of ``timeout`` seconds.
        """
        dialect = self.dialect
        postgres = connections[self.using].vendor == "postgresql"
        params = dialect.params()
        params.update(queue=queue, needle=needle, scan=int(scan) + 1)
        bound = ""
        if after is not None:
            bound = " AND (at, id) > (%(after_at)s, %(after_id)s)"
            params.update(after_at=dialect.db_time(after[0]), after_id=dialect.db_uuid(after[1]))
        hit = "position(%(needle)s in value) > 0" if postgres else "instr(value, %(needle)s) > 0"
        columns = COLUMNS.replace("value", "CASE WHEN hit THEN substr(value, 1, 160) END")
        sql = (
            f"SELECT {columns}, hit FROM (SELECT *, {hit} AS hit FROM {TASK_TABLE} "
            f"WHERE queue = %(queue)s{bound} ORDER BY at, id LIMIT %(scan)s) scanned "
            "ORDER BY at, id"
        )
        # A savepoint, so that a timeout leaves a caller's transaction usable.
        with transaction.atomic(using=self.using), statement_timeout(timeout, self.using):
            rows = self._execute(sql, params)
        more = len(rows) > scan
        found = []
        for row in rows[:scan]:
            if row[-1]:
                found.append(dialect.row_to_task(row[:-1]))
                if len(found) == limit:
                    return found, (found[-1].at, found[-1].id)
        if not more:
            return found, None
        last = dialect.row_to_task(rows[scan - 1][:-1])
        return found, (last.at, last.id)

    def in_transaction(self) -> bool:
        return bool(connections[self.using].in_atomic_block)

    def close(self) -> None:
        """Write the departures counted so far and close this thread's connection;
        Django opens another when one is needed."""
        self.write_departures()
        self.release_thread()

    @classmethod
    def stop_listening(cls) -> None:
        """Close this process's ``LISTEN`` connections (blocking claims then poll).

        For orderly shutdown, and before dropping a database; the next blocking claim
        listens again.
        """
        with _shared_lock:
            listeners = list(_listeners.values())
            _listeners.clear()
        for listener in listeners:
            listener.stop()

    def release_thread(self) -> None:
        connection = connections[self.using]
        if not connection.in_atomic_block:
            connection.close()
