"""``DjangoBackend``: tasks in the project's database (PostgreSQL or SQLite).

The hot paths (claim, delete) are single lean SQL statements sent through Django's
cursor; the ORM model in ``queues.models`` owns the schema and serves the dashboard.
Every comparison with "now" uses the database's clock. What differs between the
databases (the clock, the claim and insert statements, wake-ups, timeouts) is asked
of the backend's ``Dialect`` (``postgresql``, ``sqlite``); this module holds what is
the same for both: modifications and their locks, listings, departures, retries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import DatabaseError, connections, transaction

from ..backend import Backend, ClaimQuery, ModifyOutcome, Notifier, QueuesQuery, TasksQuery
from ..departures import DEPARTURES_TABLE, DepartureCounts
from ..errors import DependencyError
from ..modify import Modification, TaskChange, inserted_task
from ..pauses import EVERY_QUEUE_NOTE, Pause, check_pause_count
from ..tasks import QueueStat, Task, TaskID
from . import listings
from .base import Dialect, Listener, notifier_for
from .dialects import DIALECTS, dialect_for
from .outages import reconnecting
from .sql import COLUMNS, COLUMNS_NO_VALUE, LOCK_BATCH, PAUSED_TABLE, TASK_TABLE, changed_columns

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRIES = 8

_departures: dict[tuple[str, int], DepartureCounts] = {}


class DjangoBackend(Backend):
    """Tasks in the Django database ``using`` (an alias of ``settings.DATABASES``).

    Needs the ``queues`` app installed and migrated. On SQLite the database must be
    configured with ``"transaction_mode": "IMMEDIATE"`` (and should use WAL and a busy
    timeout; ``manage.py check`` says so) so that concurrent workers are correct.
    """

    supports_value_search = True

    def __init__(self, using: str = "default", *, max_value_bytes: int | None = None) -> None:
        from queues.conf import app_settings

        self.using = using
        self.max_value_bytes = (
            app_settings().MAX_VALUE_BYTES if max_value_bytes is None else max_value_bytes
        )
        self._dialect: Dialect | None = None

    @property
    def dialect(self) -> Dialect:
        """What this database does its own way (see ``base.Dialect``)."""
        if self._dialect is None:
            self._dialect = dialect_for(self.using)
        return self._dialect

    @property
    def notifier(self) -> Notifier:
        return notifier_for(self.using)

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.dialect.execute(sql, params)

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
                if attempt == RETRIES - 1 or not self.dialect.is_transient(exc):
                    raise
                logger.debug("entroq: retrying after %s", exc)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    # The clock.

    @reconnecting
    def time(self) -> datetime:
        return self.dialect.time()

    # Claims.

    def try_claim(self, query: ClaimQuery) -> Task | None:
        tasks = self.try_claim_or_arrival(query)[0]
        return tasks[0] if tasks else None

    def try_claim_many(self, query: ClaimQuery) -> list[Task]:
        return self.try_claim_or_arrival(query)[0]

    @reconnecting
    def try_claim_or_arrival(self, query: ClaimQuery) -> tuple[list[Task], float | None]:
        # Each claim, found or not, reports what the worker finished since the last one.
        self.write_departures_when_due()
        dialect = self.dialect

        def claim() -> list[Task]:
            if query.limit > 1:
                return dialect.claim_many(query)
            task = dialect.claim(query)
            return [task] if task is not None else []

        # Under heavy contention every candidate may be taken by concurrent claims;
        # if tasks are still available, try again rather than report an empty queue.
        arrival = None
        for _ in range(3):
            tasks = self._retrying(claim)
            if tasks:
                return tasks, None
            arrival = self.seconds_until_arrival(query.queues)
            if arrival is None or arrival > 0:
                break
        listener = self._listener()
        if listener is None or not listener.listening.is_set():
            # No word comes from other processes (SQLite cannot send it; PostgreSQL's
            # listener is down): look again at least every second.
            arrival = 1.0 if arrival is None else min(arrival, 1.0)
        return [], arrival

    @reconnecting
    def seconds_until_arrival(self, queues: Iterable[str]) -> float | None:
        return self.dialect.seconds_until_arrival(list(queues))

    @contextlib.contextmanager
    def subscribe(self, queues: Iterable[str]) -> Iterator[threading.Event]:
        listener = self._listener()
        if listener is not None:
            # A claim subscribes before its first try; wait (briefly) until we listen
            # so that no insert between that try and the LISTEN goes unnoticed.
            listener.listening.wait(5)
        with self.notifier.subscribe(queues) as event:
            yield event

    def _listener(self) -> Listener | None:
        """Return this process's listener, if the database has one, starting it on first use."""
        return self.dialect.listener()

    # Modifications.

    @reconnecting
    def modify(self, mod: Modification) -> tuple[list[Task], list[Task]]:
        mod.check(self.max_value_bytes)
        # The common end of a task's life, one deletion, is one conditional statement
        # whose row lock is its own. When it deletes nothing, the full path says why.
        lone_delete = len(mod.deletes) == 1 and not (mod.inserts or mod.changes or mod.depends)
        if lone_delete and self._retrying(lambda: self._delete_one(mod)):
            return [], []
        # The common start, one insert (an enqueue), is one statement too; so is one
        # change (a renewal, a move to a results queue), unless it cannot be made.
        if not (mod.deletes or mod.depends):
            if len(mod.inserts) == 1 and not mod.changes:
                inserted = self._retrying(lambda: self._insert_one(mod))
                if inserted is not None:
                    return [inserted], []
            elif len(mod.changes) == 1 and not mod.inserts:
                changed = self._retrying(lambda: self._change_one(mod))
                if changed is not None:
                    return [], [changed]
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

    def _insert_one(self, mod: Modification) -> Task | None:
        """Apply ``mod``, one insert and nothing else, in one statement that also wakes
        the queue's waiters at commit; raise ``DependencyError`` if its explicit ID
        exists. Return None where the database has no such statement (the full path
        applies it then).

        Inside the caller's transaction no savepoint is taken, as none is needed: the
        statement inserts its row or nothing, and the caller's rollback undoes it.
        A database error marks their transaction for rollback, as an ORM write does.
        """
        if not self.dialect.inserts_one_in_a_statement:
            return None
        [data] = mod.inserts
        with transaction.mark_for_rollback_on_error(using=self.using):
            task = self.dialect.insert_one(data, mod.claimant)
        if task is None:
            assert data.id is not None  # only an explicit ID collides
            raise DependencyError(inserts=[TaskID(data.id, 0)])
        return task

    def _change_one(self, mod: Modification) -> Task | None:
        """Apply ``mod``, one change and nothing else, in one statement that also wakes
        the waiters of the task's queue at commit when it moved or arrives sooner, as
        the full path would. Return None when it changed nothing (the task is gone, at
        another version or held by another claimant: the full path says which) or the
        database has no such statement. Inside the caller's transaction, as
        ``_insert_one``."""
        if not self.dialect.changes_one_in_a_statement:
            return None
        with transaction.mark_for_rollback_on_error(using=self.using):
            done = self.dialect.change_one(mod.changes[0], mod.claimant)
        if done is None:
            return None
        changed, old_queue = done
        if changed.queue != old_queue:
            self._departed([old_queue])
        return changed

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

    @reconnecting
    def modify_each(self, mods: Sequence[Modification]) -> list[ModifyOutcome]:
        """Apply each of ``mods`` on its own (see ``Backend.modify_each``).

        The lone deletions among them (a worker's finished tasks) are one statement
        and one commit for all of a claimant's; the lone changes (a task moved to a
        results queue) are one commit for all, where the database changes one in a
        statement. A deletion or change those could not make, and every other
        modification, goes through ``modify`` alone, which says why or applies it.
        """
        outcomes: list[ModifyOutcome | None] = [None] * len(mods)
        lone: dict[uuid.UUID | None, list[int]] = {}
        changes: list[int] = []
        for index, mod in enumerate(mods):
            try:
                mod.check(self.max_value_bytes)
            except ValueError as error:
                outcomes[index] = error
                continue
            if not (mod.inserts or mod.depends):
                if len(mod.deletes) == 1 and not mod.changes:
                    lone.setdefault(mod.claimant, []).append(index)
                elif len(mod.changes) == 1 and not mod.deletes:
                    changes.append(index)
        if not connections[self.using].in_atomic_block:  # else a rollback would lie
            for claimant, indexes in lone.items():
                targets = [mods[i].deletes[0] for i in indexes]
                deleted = self._retrying(
                    functools.partial(self.dialect.delete_many, targets, claimant)
                )
                self._departed(list(deleted.values()))
                for i in indexes:
                    if mods[i].deletes[0].id in deleted:
                        outcomes[i] = ([], [])
            if len(changes) > 1 and self.dialect.changes_one_in_a_statement:
                self._change_together(mods, changes, outcomes)
        for index, mod in enumerate(mods):
            if outcomes[index] is None:
                try:
                    outcomes[index] = self.modify(mod)
                except (DependencyError, ValueError) as error:
                    outcomes[index] = error
        return [outcome for outcome in outcomes if outcome is not None]

    def _change_together(
        self, mods: Sequence[Modification], indexes: list[int], outcomes: list[Any]
    ) -> None:
        """Apply the lone changes ``mods[i]`` of ``indexes`` in one transaction, a
        statement each, setting the outcome of each that was made.

        A change that cannot be made changes nothing and fails no other; a database
        error rolls them all back, and each then goes alone.
        """
        made: dict[int, Task] = {}
        try:
            with transaction.atomic(using=self.using):
                for i in indexes:
                    changed = self._change_one(mods[i])
                    if changed is not None:
                        made[i] = changed
        except DatabaseError as error:
            logger.debug("entroq: changes applied alone after %s", error)
            return
        for i, changed in made.items():
            outcomes[i] = ([], [changed])

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
        given = changed_columns(change)
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
        dialect.insert(tasks, mod.claimant, now)
        return tasks

    def _notify(self, queues: set[str]) -> None:
        if queues:
            self.dialect.notify(queues)

    # Pauses (see ``queues.entroq.pauses``).

    @reconnecting
    def pause(self, pauses: Sequence[Pause]) -> list[Pause]:
        dialect = self.dialect
        added = []
        with transaction.atomic(using=self.using):
            for pause in dict.fromkeys(pauses):
                rows = self._execute(
                    f"INSERT INTO {PAUSED_TABLE} (name, prefix, paused_at) "
                    f"VALUES (%(name)s, %(prefix)s, {dialect.now}) "
                    "ON CONFLICT (name, prefix) DO NOTHING RETURNING paused_at",
                    {**dialect.params(), "name": pause.name, "prefix": pause.prefix},
                )
                if rows:
                    added.append(dataclasses.replace(pause, since=dialect.read_time(rows[0][0])))
            if added:  # counted inside the transaction: a refusal leaves nothing paused
                check_pause_count(self._execute(f"SELECT count(*) FROM {PAUSED_TABLE}", {})[0][0])
        return added

    @reconnecting
    def resume(self, pauses: Sequence[Pause]) -> list[Pause]:
        dialect = self.dialect
        ended = []
        with transaction.atomic(using=self.using):
            for pause in dict.fromkeys(pauses):
                rows = self._execute(
                    f"DELETE FROM {PAUSED_TABLE} WHERE name = %(name)s AND prefix = %(prefix)s "
                    "RETURNING paused_at",
                    {"name": pause.name, "prefix": pause.prefix},
                )
                if rows:
                    ended.append(dataclasses.replace(pause, since=dialect.read_time(rows[0][0])))
            if ended:
                dialect.notify({EVERY_QUEUE_NOTE})  # waiting claims try again at commit
        return ended

    @reconnecting
    def paused(self) -> list[Pause]:
        rows = self._execute(
            f"SELECT name, prefix, paused_at FROM {PAUSED_TABLE} ORDER BY name, prefix", {}
        )
        return [
            Pause(name, bool(prefix), since=self.dialect.read_time(at)) for name, prefix, at in rows
        ]

    # Listings (see ``listings``).

    @reconnecting
    def tasks(self, query: TasksQuery) -> list[Task]:
        return listings.tasks(self.dialect, query)

    @reconnecting
    def queue_stats(self, query: QueuesQuery) -> dict[str, QueueStat]:
        return listings.queue_stats(self.dialect, query)

    @reconnecting
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
        bytes), reading no more than ``scan`` tasks after ``after`` in (at, id) order,
        and where the search stopped early (see ``listings.search_values``)."""
        return listings.search_values(
            self.dialect, queue, needle, after=after, scan=scan, limit=limit, timeout=timeout
        )

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
        for dialect in DIALECTS.values():
            dialect.stop_listening()

    def release_thread(self) -> None:
        connection = connections[self.using]
        if not connection.in_atomic_block:
            connection.close()
