"""``PostgresDialect``: everything ``DjangoBackend`` does its own way on PostgreSQL.

The claim and bulk insert statements (one statement each, of fixed text, prepared on
the server), the cursor that sends them, the clock (``statement_timestamp()``, not
``now()``, which stands still for a whole transaction, and a caller's transaction may
be long), ``LISTEN``/``NOTIFY`` wake-ups through one listening connection a process,
the ``statement_timeout`` setting, the collation check that makes queue prefixes
ranges, and which errors are retried. ``psycopg`` is imported on first use only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError, Error, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..backend import CLAIM_CANDIDATES, ClaimQuery, Notifier
from ..errors import DependencyError
from ..kinds import error_kind
from ..modify import TaskChange
from ..pauses import OUTCOME_SUFFIXES, split_patterns
from ..tasks import Task, TaskData, TaskID
from .base import Dialect, notifier_for
from .sql import (
    COLUMNS,
    NOTIFY_CHANNEL,
    TASK_TABLE,
    changed_columns,
    not_paused,
    prefix_range,
)

logger = logging.getLogger(__name__)

STARTS_WITH = "starts_with({text}, {start})"

# One statement claims up to ``limit`` tasks: each queue's oldest available tasks (up
# to ``candidates`` of them) in a random order, taken a turn at a time across the
# queues in a random order of queues, so that a batch is as fair across queues, and as
# random within one, as single claims are. The candidates are found in the index and
# each is fetched by its row address (in the order picked) only when the claim needs
# one more: a claim of one task reads one or two rows, not every candidate. A row that
# a concurrent claim locked and committed first is re-checked and dropped (its ``at``
# moved on). The queues are a list of values, not an array parameter: PostgreSQL plans
# a statement over an array of unknown length anew each time, which costs more than
# running it; for the same reason the limits are written in the statement.
_CLAIM = f"""
    WITH {{recursive}}{{named}}, q AS (
        SELECT name, random() AS queue_rank FROM named
        WHERE {not_paused("named.name", STARTS_WITH)}
    ), candidates AS MATERIALIZED (
        SELECT c.tid, q.name AS queue, q.queue_rank,
               row_number() OVER (PARTITION BY q.name ORDER BY random()) AS turn
        FROM q CROSS JOIN LATERAL (
            SELECT ctid AS tid FROM {TASK_TABLE}
            WHERE queue = q.name AND at <= statement_timestamp()
            ORDER BY at LIMIT {{candidates}}
        ) AS c
    ), picked AS (
        SELECT t.id
        FROM (SELECT tid, queue FROM candidates ORDER BY turn, queue_rank) AS c
        CROSS JOIN LATERAL (
            SELECT id FROM {TASK_TABLE}
            WHERE ctid = c.tid AND queue = c.queue AND at <= statement_timestamp()
            FOR UPDATE SKIP LOCKED
        ) AS t
        LIMIT {{limit}}
    )
    UPDATE {TASK_TABLE} AS t
    SET version = t.version + 1, claims = t.claims + 1, claimant = %(claimant)s,
        at = statement_timestamp() + make_interval(secs => %(duration)s),
        modified = statement_timestamp()
    FROM picked WHERE t.id = picked.id
    RETURNING {", ".join("t." + c for c in COLUMNS.split(", "))}
"""
# The queues under prefix ``i`` that have tasks, found by skipping through the index
# from one name to the next (an index probe a queue, however many tasks each holds).
# With a code-point collation a prefix is the range [low, high): ``{{start}}`` is
# ``WHERE queue >= %(lo<i>)s`` and ``{{below}}`` ``AND queue < %(hi<i>)s`` (or nothing
# when no name is above the range). Elsewhere (a language's collation, where a prefix
# is no range) both are empty: every queue of the table, kept when it starts with the
# prefix (see ``named_queues``); a probe a queue, never a scan of the table's rows.
_UNDER = f"""under{{i}}(name) AS (
        SELECT min(queue) FROM {TASK_TABLE} {{start}} {{below}}
        UNION ALL
        SELECT (SELECT min(queue) FROM {TASK_TABLE} WHERE queue > under{{i}}.name {{below}})
        FROM under{{i}} WHERE under{{i}}.name IS NOT NULL
    )"""
# A claim over a prefix leaves out the outcome queues under it (see ``is_outcome``).
_NOT_OUTCOME = " AND ".join(
    f"right(name, {len(suffix)}) <> '{suffix}'" for suffix in OUTCOME_SUFFIXES
)


@functools.lru_cache(maxsize=256)  # shapes vary with what clients send: keep the used
def claim_statement(queues: int, limit: int = 1, prefixes: tuple[bool | None, ...] = ()) -> str:
    """Return the statement that claims up to ``limit`` tasks of ``queues`` queues,
    given as ``%(q0)s``, ``%(q1)s``..., and of the queues under ``prefixes``, given as
    ``%(lo0)s`` (and ``%(hi0)s`` where the prefix is ``True``: a range with an upper
    bound; ``False``: a range without; ``None``: not a range, see ``_UNDER``)."""
    return _CLAIM.format(
        recursive="RECURSIVE " if prefixes else "",
        named=named_queues(queues, prefixes),
        limit=limit,
        # Enough candidates a queue to fill a batch from one queue, and never fewer
        # than a single claim picks from.
        candidates=max(CLAIM_CANDIDATES, 2 * limit),
    )


def named_queues(queues: int, prefixes: tuple[bool | None, ...]) -> str:
    """Return the CTEs whose last, ``named(name)``, is every queue a claim names (see
    ``claim_statement``)."""
    parts = []
    selects = []
    if queues:
        values = ", ".join(f"(%(q{i})s::text)" for i in range(queues))
        parts.append(f"given(name) AS (VALUES {values})")
        selects.append("SELECT name FROM given")
    for i, ranged in enumerate(prefixes):
        kept = f"name IS NOT NULL AND {_NOT_OUTCOME}"
        if ranged is None:
            parts.append(_UNDER.format(i=i, start="", below=""))
            kept += " AND " + STARTS_WITH.format(text="name", start=f"%(lo{i})s")
        else:
            below = f"AND queue < %(hi{i})s" if ranged else ""
            parts.append(_UNDER.format(i=i, start=f"WHERE queue >= %(lo{i})s", below=below))
        selects.append(f"SELECT name FROM under{i} WHERE {kept}")
    parts.append(f"named(name) AS ({' UNION '.join(selects)})")
    return ", ".join(parts)


POSTGRES_CLAIM = claim_statement(1)
# Finished tasks of one claimant, deleted together: each version unless another
# claimant holds it (as ``DELETE_ONE``, a row at a time).
POSTGRES_DELETE_MANY = f"""
    DELETE FROM {TASK_TABLE} AS t
    USING unnest(%(ids)s::uuid[], %(versions)s::int[]) AS target(id, version)
    WHERE t.id = target.id AND t.version = target.version
      AND (t.claimant IS NULL OR t.claimant = %(me)s OR t.at <= statement_timestamp())
    RETURNING t.id, t.queue
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
# A modification that only inserts one task, in one statement that commits alone
# (outside a transaction) and needs no savepoint inside one: an explicit ID that
# exists inserts nothing and so notifies nothing (the caller reports the collision);
# otherwise the notification goes out at commit, as ``notify`` sends it.
POSTGRES_INSERT_ONE = f"""
    WITH new AS (
        INSERT INTO {TASK_TABLE} ({COLUMNS}, err_kind)
        VALUES (
            %(id)s, %(queue)s, 0,
            coalesce(%(at)s::timestamptz,
                     statement_timestamp() + make_interval(secs => %(arrival_in)s::float8)),
            %(claimant)s::uuid, 0, %(value)b, statement_timestamp(), statement_timestamp(),
            %(attempt)s::int, %(err)s::text, %(err_kind)s::text
        )
        ON CONFLICT (id) DO NOTHING
        RETURNING queue, at, created
    )
    SELECT at, created, pg_notify('{NOTIFY_CHANNEL}', queue) FROM new
"""
# A modification that only changes one task (a renewal, a release, a move to another
# queue), in one statement, as ``DjangoBackend`` would apply it in several: the row is
# locked only if it is still at the version and no other claimant holds it (at the
# statement's clock), and the waiters of its queue are notified when it moved or
# arrives sooner. Nothing comes back when the change cannot be made (the caller then
# asks the full path why). ``{given}`` sets the columns the change gives (as the full
# path, an unchanged value is neither sent nor written), ``{returned}`` is the
# changed row's columns.
POSTGRES_CHANGE_ONE = f"""
    WITH old AS (
        SELECT id, queue, at FROM {TASK_TABLE}
        WHERE id = %(id)s AND version = %(version)s
            AND (claimant IS NULL OR claimant = %(me)s::uuid OR at <= statement_timestamp())
        FOR UPDATE
    ), new AS (
        SELECT coalesce(%(at)s::timestamptz, statement_timestamp()
                        + make_interval(secs => %(arrival_in)s::float8)) AS at
    ), changed AS (
        UPDATE {TASK_TABLE} AS t
        SET version = t.version + 1, {{given}}at = new.at,
            claimant = CASE WHEN new.at > statement_timestamp() THEN %(me)s::uuid END,
            modified = statement_timestamp()
        FROM old, new WHERE t.id = old.id
        RETURNING {{returned}}, old.queue AS old_queue, old.at AS old_at
    )
    SELECT {COLUMNS}, old_queue,
        CASE WHEN queue <> old_queue OR at < old_at
            THEN pg_notify('{NOTIFY_CHANNEL}', queue)::text END
    FROM changed
"""
CHANGE_ONE_COLUMNS = {
    "queue": "%(queue)s::text",
    "value": "%(value)b::bytea",
    "attempt": "%(attempt)s::int",
    "err": "%(err)s::text",
    "err_kind": "%(err_kind)s::text",
}
_CHANGED_COLUMNS = ", ".join("t." + c for c in COLUMNS.split(", "))


@functools.cache
def change_one_statement(given: tuple[str, ...], send_value: bool) -> str:
    """Return ``POSTGRES_CHANGE_ONE`` setting the columns ``given`` (of
    ``CHANGE_ONE_COLUMNS``), sending the changed value back if ``send_value``."""
    returned = _CHANGED_COLUMNS
    if not send_value:
        returned = returned.replace("t.value", "NULL::bytea AS value")
    return POSTGRES_CHANGE_ONE.format(
        given="".join(f"{column} = {CHANGE_ONE_COLUMNS[column]}, " for column in given),
        returned=returned,
    )


# A bulk insert sends at most this many rows, and about this many value bytes, in one
# statement (PostgreSQL refuses parameters over 1 GB).
INSERT_ROWS = 10_000
INSERT_BYTES = 64 * 1024 * 1024
# Serialization failures, deadlocks, and a concurrent insert of the same explicit ID
# (the retry then reports the collision properly).
RETRY_SQLSTATES = {"40001", "40P01", "23505"}


def batches(tasks: list[Task]) -> Iterator[list[Task]]:
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


class PgListener:
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
_listeners: dict[tuple[str, int], PgListener] = {}


class PostgresDialect(Dialect):
    vendor = "postgresql"
    now = "statement_timestamp()"
    lock_share = "FOR SHARE"
    queue_order = 'queue COLLATE "C"'
    value_contains = "position(%(needle)s in value) > 0"
    inserts_one_in_a_statement = True
    changes_one_in_a_statement = True

    def __init__(self, using: str) -> None:
        import psycopg

        from queues.conf import app_settings

        super().__init__(using)
        self.prepare = prepare = app_settings().PREPARE_STATEMENTS

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
                    "prefixes are matched by a scan (claims over a prefix probe every "
                    'queue); ALTER its COLLATE to "C" to make them ranges of the index',
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

    def time(self) -> datetime:
        return self.read_time(self.execute("SELECT statement_timestamp()", {})[0][0])

    def claim(self, query: ClaimQuery) -> Task | None:
        tasks = self.claim_many(query)
        return tasks[0] if tasks else None

    def claim_many(self, query: ClaimQuery) -> list[Task]:
        names, shapes, params = self.named_params(query.queues)
        params.update(claimant=query.claimant, duration=float(query.duration))
        cursor = self.hot_cursor()
        cursor.execute(claim_statement(names, query.limit, shapes), params)
        return [self.row_to_task(row) for row in cursor.fetchall()]

    def named_params(self, queues: Sequence[str]) -> tuple[int, tuple[bool | None, ...], Any]:
        """Return how many queues ``queues`` names, the shapes of its prefixes, and the
        parameters that give them (see ``named_queues``)."""
        names, prefixes = split_patterns(queues)
        params: dict[str, Any] = {f"q{i}": queue for i, queue in enumerate(names)}
        if not prefixes:
            return len(names), (), params
        ranges = self.sorts_by_code_point()
        shapes: list[bool | None] = []
        for i, prefix in enumerate(prefixes):
            if not ranges:
                params[f"lo{i}"] = prefix
                shapes.append(None)
                continue
            params[f"lo{i}"], high = prefix_range(prefix)
            if high is not None:
                params[f"hi{i}"] = high
            shapes.append(high is not None)
        return len(names), tuple(shapes), params

    def delete_many(
        self, targets: Sequence[TaskID], claimant: uuid.UUID | None
    ) -> dict[uuid.UUID, str]:
        cursor = self.hot_cursor()
        cursor.execute(
            POSTGRES_DELETE_MANY,
            {
                "ids": [t.id for t in targets],
                "versions": [t.version for t in targets],
                "me": claimant,
            },
        )
        return {row[0]: row[1] for row in cursor.fetchall()}

    def seconds_until_arrival(self, queues: list[str]) -> float | None:
        names, shapes, params = self.named_params(queues)
        recursive = "RECURSIVE " if shapes else ""
        rows = self.execute(
            f"""WITH {recursive}{named_queues(names, shapes)}
                SELECT EXTRACT(EPOCH FROM min(first.at) - statement_timestamp())
                FROM named CROSS JOIN LATERAL (
                    SELECT at FROM {TASK_TABLE} WHERE queue = named.name ORDER BY at LIMIT 1
                ) AS first
                WHERE {not_paused("named.name", STARTS_WITH)}""",
            params,
        )
        return None if rows[0][0] is None else float(rows[0][0])

    def insert(self, tasks: list[Task], claimant: uuid.UUID | None, now: Any) -> None:
        created = self.read_time(now)
        for batch in batches(tasks):
            # One statement of fixed text with an array a column, however many rows:
            # the server parses (and the client quotes) nothing per row. An explicit
            # ID that a concurrent transaction inserted first is skipped here and
            # reported below, even inside the caller's transaction.
            cursor = self.hot_cursor()
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
                    "claimant": claimant,
                    "now": created,
                },
            )
            stored = {row[0] for row in cursor.fetchall()}
            if len(stored) != len(batch):
                raise DependencyError(inserts=[t.id_version() for t in batch if t.id not in stored])

    def insert_one(self, data: TaskData, claimant: uuid.UUID | None) -> Task | None:
        """Insert the task ``data`` describes and notify its queue's waiters at commit,
        in one statement; return None, having done nothing, if its explicit ID exists."""
        task_id = data.id or uuid.uuid4()
        cursor = self.hot_cursor()
        cursor.execute(
            POSTGRES_INSERT_ONE,
            {
                "id": task_id,
                "queue": data.queue,
                "at": data.at,
                "arrival_in": data.arrival_in or 0.0,
                "claimant": claimant,
                "value": data.value,
                "attempt": data.attempt,
                "err": data.err,
                "err_kind": error_kind(data.err),
            },
        )
        row = cursor.fetchone()
        if row is None:
            return None
        created = self.read_time(row[1])
        return Task(
            queue=data.queue,
            id=task_id,
            version=0,
            at=data.at or self.read_time(row[0]),
            claimant=claimant,
            claims=0,
            value=data.value,
            created=created,
            modified=created,
            attempt=data.attempt,
            err=data.err,
        )

    def change_one(self, change: TaskChange, claimant: uuid.UUID | None) -> tuple[Task, str] | None:
        """Apply ``change`` for ``claimant`` in one statement, notifying the waiters of
        its queue at commit if it moved or arrives sooner; return the changed task and
        the queue it was in, or None, having done nothing, if it is not at the change's
        version or another claimant holds it."""
        params: dict[str, Any] = {
            "id": change.id,
            "version": change.version,
            "me": claimant,
            "at": change.at,
            "arrival_in": change.arrival_in or 0.0,
        }
        given = changed_columns(change)
        params.update(given)
        known = change.answered_value()
        cursor = self.hot_cursor()
        cursor.execute(change_one_statement(tuple(given), known is None), params)
        row = cursor.fetchone()
        if row is None:
            return None
        changed = self.row_to_task(row)
        if known is not None:
            changed = dataclasses.replace(changed, value=known)
        return changed, row[len(row) - 2]

    def is_transient(self, exc: DatabaseError) -> bool:
        return getattr(exc.__cause__, "sqlstate", None) in RETRY_SQLSTATES

    def notify(self, queues: set[str]) -> None:
        # Delivered at commit, once per queue and transaction (PostgreSQL folds
        # duplicates), to every listening process, this one included.
        self.execute(
            "SELECT pg_notify(%(channel)s, name) FROM unnest(%(queues)s::text[]) AS name",
            {"channel": NOTIFY_CHANNEL, "queues": sorted(queues)},
        )

    def listener(self) -> PgListener:
        key = (self.using, os.getpid())
        with _shared_lock:
            listener = _listeners.get(key)
            if listener is None:
                notifier = notifier_for(self.using)
                listener = _listeners[key] = PgListener(connections[self.using], notifier)
        return listener

    @staticmethod
    def stop_listening() -> None:
        with _shared_lock:
            listeners = list(_listeners.values())
            _listeners.clear()
        for listener in listeners:
            listener.stop()

    @staticmethod
    @contextlib.contextmanager
    def statement_timeout(connection: BaseDatabaseWrapper, seconds: float) -> Iterator[None]:
        """PostgreSQL's ``statement_timeout``, put back afterwards: the connection
        outlives the request.

        Both statements go through psycopg's connection, not a Django cursor, which
        would cost an API request more than its task does; errors are Django's all
        the same.
        """
        from psycopg.pq import TransactionStatus

        with connection.wrap_database_errors:
            previous = connection.connection.execute(
                "SELECT current_setting('statement_timeout'), "
                "set_config('statement_timeout', %s, false)",
                [f"{max(1, round(seconds * 1000))}ms"],
            ).fetchone()[0]
        try:
            yield
        finally:
            raw = connection.connection
            # In a failed transaction the rollback to come undoes the setting; a closed
            # connection took it along.
            if raw is not None and raw.info.transaction_status != TransactionStatus.INERROR:
                try:
                    with connection.wrap_database_errors:
                        raw.execute("SELECT set_config('statement_timeout', %s, false)", [previous])
                except Error:
                    # Never left to a later request with our timeout; and the error
                    # that brought us here, if any, is the one to report.
                    with contextlib.suppress(Error):
                        connection.close()
