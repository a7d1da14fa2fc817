"""``Dialect``: what ``DjangoBackend`` asks of a database, and what differs between them.

One subclass a database (``postgresql.PostgresDialect``, ``sqlite.SQLiteDialect``)
holds everything that is written differently for it: the clock, how values travel,
the claim and insert statements, the cursor for the hot paths, wake-ups (a listener
or polling), notification, the statement timeout and which errors are worth a retry.
The backend holds none of it, as Django's ``connection.ops`` keeps each database's
SQL apart from the ORM. The per-process registry of in-process ``Notifier`` objects
lives here too: the backend and every dialect reach the same one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..backend import ClaimQuery, Notifier, claim_in_turns
from ..modify import TaskChange
from ..tasks import Task, TaskData, TaskID
from .sql import DELETE_ONE

_notifiers_lock = threading.Lock()
_notifiers: dict[tuple[str, int], Notifier] = {}


def notifier_for(using: str) -> Notifier:
    """Return this process's ``Notifier`` for the database ``using``."""
    with _notifiers_lock:
        return _notifiers.setdefault((using, os.getpid()), Notifier())


class Listener(Protocol):
    """Word from other processes: ``listening`` is set while it comes."""

    listening: threading.Event


class Dialect:
    """What differs between databases: the clock, and how values travel."""

    vendor = ""
    now = ""  # SQL for the database clock
    lock_share = ""  # share locks on the rows a modification depends on (SQLite has none)
    queue_order = "queue"  # by code point, as Python sorts (SQLite compares bytes)
    value_contains = ""  # SQL: whether the value contains the parameter ``needle``
    inserts_one_in_a_statement = False  # ``insert_one`` works
    changes_one_in_a_statement = False  # ``change_one`` works

    def __init__(self, using: str) -> None:
        # An alias, not a connection: Django's connections belong to one thread each.
        self.using = using
        self.delete_one = DELETE_ONE.format(now=self.now)

    # Statements.

    def hot_cursor(self) -> Any:
        """Return the cursor for the claim and delete statements."""
        return connections[self.using].cursor()

    def execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run ``sql`` on this thread's connection; return its rows (none for no result)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def params(self) -> dict[str, Any]:
        """Return the parameters every statement may use."""
        return {}

    def in_list(self, column: str, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """Return SQL testing ``column`` against ``values``, as one parameter ``name``."""
        raise NotImplementedError

    def sorts_by_code_point(self) -> bool:
        """Return whether queue names compare by code point (prefixes are then ranges)."""
        return True

    # Values.

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

    # The clock, claims and inserts.

    def time(self) -> datetime:
        """Return the database's clock."""
        raise NotImplementedError

    def claim(self, query: ClaimQuery) -> Task | None:
        """Claim one available task of ``query``'s queues, if any: one try."""
        raise NotImplementedError

    def claim_many(self, query: ClaimQuery) -> list[Task]:
        """Claim up to ``query.limit`` available tasks of ``query``'s queues: one try.

        The default claims one at a time (each in its own transaction), taking turns
        across the queues.
        """
        return claim_in_turns(self.claim, query)

    def insert_one(self, data: TaskData, claimant: uuid.UUID | None) -> Task | None:
        """Insert the task ``data`` describes, waking its queue's waiters at commit, in
        one statement; return None, having done nothing, if its explicit ID exists.

        Only where ``inserts_one_in_a_statement`` (elsewhere the backend's full path
        applies the insert).
        """
        raise NotImplementedError

    def change_one(self, change: TaskChange, claimant: uuid.UUID | None) -> tuple[Task, str] | None:
        """Apply ``change`` in one statement (see ``PostgresDialect.change_one``); return
        the changed task and the queue it was in, or None, having done nothing.

        Only where ``changes_one_in_a_statement``.
        """
        raise NotImplementedError

    def delete_many(
        self, targets: Sequence[TaskID], claimant: uuid.UUID | None
    ) -> dict[uuid.UUID, str]:
        """Delete each of ``targets`` (a task version) unless another claimant holds it;
        return the queues of those deleted, by ID. Each deletion stands alone: one the
        store cannot make leaves the others.

        The default deletes them one statement each.
        """
        deleted: dict[uuid.UUID, str] = {}
        for target in targets:
            rows = self.execute(
                self.delete_one,
                {
                    **self.params(),
                    "id": self.db_uuid(target.id),
                    "version": target.version,
                    "me": self.db_uuid(claimant),
                },
            )
            if rows:
                deleted[target.id] = rows[0][0]
        return deleted

    def seconds_until_arrival(self, queues: list[str]) -> float | None:
        """Return the seconds until the first task of ``queues`` arrives (negative when
        one is available now), or None when they are empty."""
        raise NotImplementedError

    def insert(self, tasks: list[Task], claimant: uuid.UUID | None, now: Any) -> None:
        """Insert ``tasks`` (new, at version 0) for ``claimant``; ``now`` is the clock
        as the database returned it. Raise ``DependencyError`` for IDs that exist."""
        raise NotImplementedError

    def is_transient(self, exc: DatabaseError) -> bool:
        """Return whether ``exc`` is worth running the operation again for."""
        return False

    # Wake-ups.

    def notify(self, queues: set[str]) -> None:
        """Wake the claims waiting on ``queues`` once the transaction commits."""
        raise NotImplementedError

    def listener(self) -> Listener | None:
        """Return this process's listener for word from other processes, starting it
        on first use; None where there is none (claims then poll)."""
        return None

    @staticmethod
    def stop_listening() -> None:
        """Stop this process's listeners of this kind of database."""

    # Timeouts.

    @staticmethod
    @contextlib.contextmanager
    def statement_timeout(connection: BaseDatabaseWrapper, seconds: float) -> Iterator[None]:
        """Cancel each statement on ``connection`` (connected) that runs longer than
        ``seconds`` meanwhile, raising ``OperationalError``; here, a database without
        a way to: nothing is cancelled."""
        yield
