"""Bulk actions on every task of a queue that matches a filter, run in the background.

``start`` takes the IDs of the tasks in scope, then records a ``BulkRun`` and, in the
same transaction, inserts a task carrying its ID into the queue ``entroq/bulk``. A
worker (``manage.py eqworker --handler queues.bulk.work --queue entroq/bulk``) claims
it and runs ``execute``: 500 tasks a client-API modification, each committed on its
own, with a pause between chunks so that the queues' own workers are never starved.
Progress is saved after each chunk; if the worker dies, the carrier task's lease
lapses and the next worker goes on from the saved position. A unique constraint
allows one running run per scope (a queue and its filters), so starting a run twice
is harmless.

A run acts on the tasks that matched when it started, each at most once; tasks that
arrive later are left alone. A task that is gone or has left the queue by the time
the run reaches it is counted as gone; one that a worker holds, or that changes
under the run, is left alone and counted as a conflict (a bulk run never forces).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from queues import undo
from queues.conf import app_settings
from queues.entroq import EntroQ, ModifyArg, Task, inserting_into, ops
from queues.entroq.tasks import TASK_STATES, check_queue
from queues.models import TRIAGED, AuditEntry, BulkRun
from queues.models import Task as TaskRow
from queues.service import client

logger = logging.getLogger("queues.bulk")

BULK_QUEUE = "entroq/bulk"
WORKER_COMMAND = f"manage.py eqworker --handler queues.bulk.work --queue {BULK_QUEUE}"
ACTIONS = ("retry", "delete", "move")
CHUNK = ops.CHUNK
CONFLICT_SAMPLE = 20
# What running a run changes of it (its ID list, read once, never changes).
PROGRESS = [
    *("position", "done", "conflicts", "gone", "conflict_sample", "updated"),
    *("status", "finished", "error"),
]


class AlreadyRunning(Exception):
    """A run on the same scope is running; it is ``run``."""

    def __init__(self, run: BulkRun) -> None:
        super().__init__(f"bulk run #{run.pk} on this scope is still running")
        self.run = run


@dataclass(frozen=True)
class Scope:
    """Which tasks: those of ``queue`` in ``state`` (any if empty) with attempt ≥ n,
    and, when ``error_group`` is not None, whose error is of that kind."""

    queue: str
    state: str = ""
    min_attempt: int = 0
    #: An error kind (``queues.entroq.kinds``); "" is the group of empty errors.
    error_group: str | None = None

    def __post_init__(self) -> None:
        check_queue(self.queue)
        if self.state and self.state not in TASK_STATES:
            raise ValueError(f"state must be one of {', '.join(TASK_STATES)}")
        if self.min_attempt < 0:
            raise ValueError("min_attempt must not be negative")
        if self.error_group is not None and "\x00" in self.error_group:
            raise ValueError("an error group must not contain NUL characters")

    @property
    def key(self) -> str:
        """A digest of the scope, for the one-run-per-scope constraint."""
        text = json.dumps([self.queue, self.state, self.min_attempt, self.error_group])
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def filters(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "min_attempt": self.min_attempt,
            "error_group": self.error_group,
        }

    def describe(self) -> str:
        parts = [f"queue {self.queue}"]
        if self.state:
            parts.append("scheduled" if self.state == "future" else self.state)
        if self.min_attempt:
            parts.append(f"attempt ≥ {self.min_attempt}")
        if self.error_group is not None:
            parts.append(f"error like “{self.error_group}”" if self.error_group else "no error")
        return ", ".join(parts)

    def rows(self, now: datetime) -> QuerySet[TaskRow]:
        """Return the rows the SQL filters match at ``now`` (a read: only backends write)."""
        rows = TaskRow.objects.filter(queue=self.queue)
        if self.state == "available":
            rows = rows.filter(at__lte=now)
        elif self.state == "claimed":
            rows = rows.filter(at__gt=now, claimant__isnull=False)
        elif self.state == "future":
            rows = rows.filter(at__gt=now, claimant__isnull=True)
        if self.min_attempt:
            rows = rows.filter(attempt__gte=self.min_attempt)
        if self.error_group is not None:  # as triage groups them
            rows = rows.filter(TRIAGED, err_kind=self.error_group)
        return rows.order_by("at", "id")

    def ids(self) -> list[uuid.UUID]:
        """Return the IDs of the tasks in scope now, in (at, id) order."""
        rows = self.rows(client().time())
        return list(rows.values_list("id", flat=True).iterator(5000))


def action_of(action: str, target: str = "") -> Callable[[Task], Sequence[ModifyArg]]:
    """Return what ``action`` does to one task; ``ValueError`` if it cannot."""
    if action == "retry":
        return ops.retry
    if action == "delete":
        return ops.delete
    if action == "move":
        return ops.moving(target)
    raise ValueError(f"no bulk action {action!r}; one of {', '.join(ACTIONS)}")


def plan(scope: Scope, sample: int = 10) -> tuple[int, list[Task]]:
    """Return how many tasks are in scope now, and the first few (without values)."""
    rows = scope.rows(client().time())
    count, ids = rows.count(), list(rows.values_list("id", flat=True)[:sample])
    return count, client().tasks(ids=ids, omit_values=True) if ids else []


def start(
    user: AbstractBaseUser | AnonymousUser,
    action: str,
    scope: Scope,
    target: str = "",
    ids: list[uuid.UUID] | None = None,
) -> BulkRun:
    """Record a run on the tasks in scope now (or on ``ids``, read from the scope by
    the caller) and queue it for a worker.

    Raise ``AlreadyRunning`` if a run on the same scope is running.
    """
    action_of(action, target)  # refuse a bad action or target before anything is stored
    if ids is None:
        ids = scope.ids()  # outside the transaction: SQLite would hold its write lock
    run = BulkRun(
        user_id=user.pk if user.is_authenticated else None,
        username=user.get_username(),
        action=action,
        queue=scope.queue,
        filters=scope.filters,
        target=target,
        ids=[i.hex for i in ids],
        total=len(ids),
        scope=scope.key,
    )
    try:
        with transaction.atomic():
            run.save()
            # In the same transaction: the run exists if and only if a worker will run it.
            client().modify(inserting_into(BULK_QUEUE, value=str(run.pk).encode()))
    except IntegrityError:
        running = BulkRun.objects.filter(scope=scope.key, status=BulkRun.Status.RUNNING).first()
        if running is None:  # it ended meanwhile
            return start(user, action, scope, target, ids)
        raise AlreadyRunning(running) from None
    _log(run, f"started run #{run.pk} on {run.total:,} tasks")
    return run


def cancel(run: BulkRun, user: AbstractBaseUser | AnonymousUser | None = None) -> None:
    """Stop ``run`` after its current chunk."""
    if _end(run, BulkRun.Status.CANCELLED):
        who = f" by {user.get_username()}" if user is not None else ""
        _log(run, f"run #{run.pk} cancelled{who} after {run.done:,} done")


def work(task: Task) -> list[ModifyArg]:
    """The worker's handler: run the bulk run the task carries, then finish the task;
    or prune kept deletions, for the pruning carrier (see ``queues.undo``)."""
    if task.value == undo.PRUNE_VALUE:
        return undo.work_pruning(task)
    run = BulkRun.objects.filter(pk=int(task.value or b"0")).first()
    if run is not None:
        execute(run)
    return [task.as_deletion()]


def execute(
    run: BulkRun,
    eq: EntroQ | None = None,
    *,
    between_chunks: Callable[[BulkRun], None] | None = None,
) -> BulkRun:
    """Run ``run`` from its saved position to the end, saving progress per chunk.

    Only one executor moves a run on: progress is saved only if the position is still
    the one this executor started the chunk from.
    """
    eq = eq or client()
    act = action_of(run.action, run.target)
    pause = app_settings().BULK_PAUSE_SECONDS
    run.refresh_from_db()
    # A delete or a move keeps what it changes, so that the run can be undone; a
    # deletion kept needs the values it deletes.
    keeping = undo.for_run(eq, run)
    source = keeping or eq
    values = run.action == "retry" or (run.action == "delete" and keeping is not None)
    ids = [uuid.UUID(hex=i) for i in run.ids]
    try:
        while run.status == BulkRun.Status.RUNNING and run.position < len(ids):
            chunk = ids[run.position : run.position + CHUNK]
            found = source.tasks(ids=chunk, omit_values=not values)
            # Still where the run found it; changes to anything else are the store's
            # to refuse (a conflict), and state filters chose when the run started.
            current = [t for t in found if t.queue == run.queue]
            result = ops.apply_each(source, current, act, chunk=CHUNK)
            if not _save_progress(run, len(chunk), len(chunk) - len(current), result):
                return run  # another executor has moved this run on
            if between_chunks is not None:
                between_chunks(run)
            time.sleep(pause)  # let the queues' own workers have the database
            run.refresh_from_db(fields=["status"])
    except (OperationalError, InterfaceError):
        raise  # an outage: the worker backs off, and the run resumes later
    except Exception as error:
        logger.exception("bulk run #%s failed", run.pk)
        if _end(run, BulkRun.Status.FAILED, error=repr(error)[:2000]):
            _log(run, f"run #{run.pk} failed: {error!r}")
        return run
    if _end(run, BulkRun.Status.DONE):
        _log(
            run,
            f"run #{run.pk} finished: {run.done:,} done, {run.conflicts:,} conflicts, "
            f"{run.gone:,} gone",
        )
    return run


def _save_progress(run: BulkRun, read: int, gone: int, result: ops.BulkResult) -> bool:
    room = CONFLICT_SAMPLE - len(run.conflict_sample)
    sample = run.conflict_sample + [
        {"id": str(item.id), "version": item.version, "detail": why}
        for item, why in result.conflicts[: max(room, 0)]
    ]
    saved = BulkRun.objects.filter(pk=run.pk, position=run.position).update(
        position=F("position") + read,
        done=F("done") + len(result.done),
        conflicts=F("conflicts") + len(result.conflicts),
        gone=F("gone") + gone,
        conflict_sample=sample,
        updated=timezone.now(),
    )
    # Not the whole run: its ID list is read once a run, not once a chunk.
    run.refresh_from_db(fields=PROGRESS)
    return bool(saved)


def _end(run: BulkRun, status: str, error: str = "") -> bool:
    """End a running run with ``status``; return False if it had ended already."""
    ended = BulkRun.objects.filter(pk=run.pk, status=BulkRun.Status.RUNNING).update(
        status=status, finished=timezone.now(), error=error
    )
    run.refresh_from_db(fields=PROGRESS)
    return bool(ended)


def _log(run: BulkRun, detail: str) -> None:
    if run.status == BulkRun.Status.RUNNING or (run.done and not run.conflicts):
        outcome = AuditEntry.Outcome.DONE
    elif run.done:
        outcome = AuditEntry.Outcome.PARTIAL
    elif run.conflicts:
        outcome = AuditEntry.Outcome.CONFLICT
    else:
        outcome = AuditEntry.Outcome.REFUSED
    if run.status == BulkRun.Status.DONE and not run.done and not run.conflicts:
        outcome = AuditEntry.Outcome.DONE  # nothing was left to do
    entry = AuditEntry.objects.create(
        user_id=run.user_id,
        username=run.username,
        action=f"bulk {run.action}",
        queue=run.queue,
        target=run.target,
        outcome=outcome,
        detail=f"{detail} ({Scope(run.queue, **run.filters).describe()})",
    )
    if run.status != BulkRun.Status.RUNNING:
        undo.offer_in(run, entry)  # the entry of its end offers to undo it
