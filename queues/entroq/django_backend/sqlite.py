"""``SQLiteDialect``: everything ``DjangoBackend`` does its own way on SQLite.

SQLite runs inside this process: its clock is the host's, passed in as a parameter;
UUIDs travel as hex and times as UTC text, as Django's fields store them. It has one
writer at a time and no row locks, so a claim is a short ``IMMEDIATE`` transaction;
it cannot tell other processes of new tasks, so blocking claims poll; and its
statement timeout is a progress handler.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..backend import CLAIM_CANDIDATES, ClaimQuery, claim_in_turns
from ..kinds import error_kind
from ..modify import inserted_task
from ..pauses import claimed_under, split_patterns
from ..tasks import Task, TaskData, utcnow
from .base import Dialect, notifier_for
from .sql import COLUMNS, TASK_TABLE, not_paused, prefix_range

# SQLite has no starts_with before 3.43; a prefix is the start of the same length.
STARTS_WITH = "substr({text}, 1, length({start})) = {start}"

# The SQLite progress handler in force on each connection, for nested timeouts.
_progress_handlers: weakref.WeakKeyDictionary[BaseDatabaseWrapper, Callable[[], bool] | None]
_progress_handlers = weakref.WeakKeyDictionary()


class SQLiteDialect(Dialect):
    """SQLite keeps UUIDs as hex and times as UTC text, as Django's fields do.

    Times are always written with six fractional digits so that text order is time order.
    """

    vendor = "sqlite"
    now = "%(now)s"
    value_contains = "instr(value, %(needle)s) > 0"
    inserts_one_in_a_statement = True

    def __init__(self, using: str) -> None:
        mode = connections[using].settings_dict.get("OPTIONS", {}).get("transaction_mode")
        if str(mode).upper() != "IMMEDIATE":
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"EntroQ on SQLite needs DATABASES[{using!r}]['OPTIONS']"
                "['transaction_mode'] = 'IMMEDIATE' so that concurrent claims and "
                "modifications take the write lock up front"
            )
        super().__init__(using)

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

    def time(self) -> datetime:
        return utcnow()

    def claim(self, query: ClaimQuery) -> Task | None:
        with transaction.atomic(using=self.using):
            queues = self._named(query.queues)
            random.shuffle(queues)
            now = utcnow()
            for queue in queues:
                rows = self.execute(
                    f"SELECT id FROM {TASK_TABLE} WHERE queue = %(queue)s AND at <= %(now)s "
                    f"AND {not_paused('%(queue)s', STARTS_WITH)} "
                    f"ORDER BY at LIMIT {CLAIM_CANDIDATES}",
                    {"queue": queue, "now": self.db_time(now)},
                )
                if rows:
                    claimed = self.execute(
                        f"UPDATE {TASK_TABLE} SET version = version + 1, claims = claims + 1, "
                        "claimant = %(claimant)s, at = %(until)s, modified = %(now)s "
                        f"WHERE id = %(id)s RETURNING {COLUMNS}",
                        {
                            "id": random.choice(rows)[0],
                            "claimant": self.db_uuid(query.claimant),
                            "until": self.db_time(now + timedelta(seconds=query.duration)),
                            "now": self.db_time(now),
                        },
                    )
                    return self.row_to_task(claimed[0])
        return None

    def claim_many(self, query: ClaimQuery) -> list[Task]:
        # Turns across the queues under a prefix, not across the prefixes.
        named = tuple(self._named(query.queues))
        return claim_in_turns(self.claim, dataclasses.replace(query, queues=named))

    def _named(self, queues: Sequence[str]) -> list[str]:
        """Return the queues ``queues`` name: the names, and those with tasks under the
        prefixes (which, in SQLite's binary order, are ranges of the index)."""
        names, prefixes = split_patterns(queues)
        for prefix in prefixes:
            low, high = prefix_range(prefix)
            below = "" if high is None else "AND queue < %(high)s"
            rows = self.execute(
                f"SELECT DISTINCT queue FROM {TASK_TABLE} WHERE queue >= %(low)s {below}",
                {"low": low, "high": high},
            )
            names += [row[0] for row in rows if claimed_under(row[0], [prefix])]
        return list(dict.fromkeys(names))

    def seconds_until_arrival(self, queues: list[str]) -> float | None:
        where, params = self.in_list("queue", "q", self._named(queues))
        rows = self.execute(
            f"SELECT min(at) FROM {TASK_TABLE} WHERE {where} "
            f"AND {not_paused(f'{TASK_TABLE}.queue', STARTS_WITH)}",
            params,
        )
        if rows[0][0] is None:
            return None
        return (self.read_time(rows[0][0]) - utcnow()).total_seconds()

    def insert(self, tasks: list[Task], claimant: uuid.UUID | None, now: Any) -> None:
        claimant_id = self.db_uuid(claimant)
        with connections[self.using].cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {TASK_TABLE} ({COLUMNS}, err_kind) VALUES "
                "(%s, %s, 0, %s, %s, 0, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        self.db_uuid(t.id),
                        t.queue,
                        self.db_time(t.at),
                        claimant_id,
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

    def insert_one(self, data: TaskData, claimant: uuid.UUID | None) -> Task | None:
        """Insert the task ``data`` describes in one statement, and wake this process's
        waiters on its queue at commit; return None, having done nothing, if its
        explicit ID exists."""
        task = inserted_task(data, claimant, utcnow())
        created = self.db_time(task.created)
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TASK_TABLE} ({COLUMNS}, err_kind) VALUES "
                "(%s, %s, 0, %s, %s, 0, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                (
                    self.db_uuid(task.id),
                    task.queue,
                    self.db_time(task.at),
                    self.db_uuid(claimant),
                    task.value,
                    created,
                    created,
                    task.attempt,
                    task.err,
                    error_kind(task.err),
                ),
            )
            if cursor.fetchone() is None:
                return None
        self.notify({task.queue})
        return task

    def is_transient(self, exc: DatabaseError) -> bool:
        # Not SQLite's "database is locked": it comes after the busy timeout has been
        # waited out already, and trying again would wait it out again and again.
        return False

    def notify(self, queues: set[str]) -> None:
        # No word reaches other processes (their claims poll); this one's waiters
        # hear at commit.
        notifier = notifier_for(self.using)
        transaction.on_commit(lambda: notifier.notify(queues), using=self.using)

    @staticmethod
    @contextlib.contextmanager
    def statement_timeout(connection: BaseDatabaseWrapper, seconds: float) -> Iterator[None]:
        """A progress handler that interrupts a statement running past ``seconds``."""
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
