"""Bulk actions on every task of a queue that matches a filter, run in the background.

``start`` records a ``BulkRun`` and, in the same transaction, inserts a task carrying
its ID into the queue ``entroq/bulk``; a worker (``manage.py eqworker --handler
queues.bulk.work --queue entroq/bulk``) claims it and runs ``execute``: 500 tasks a
client-API modification, each committed on its own, with a pause between chunks so
that the queue's own workers are never starved. Progress is saved after each chunk;
if the worker dies, the carrier task's lease lapses and the next worker goes on from
the saved cursor. A unique constraint allows one running run per scope (a queue and
its filters), so starting a run twice is harmless.

A run acts on the tasks that matched when it started: those whose ``at`` was then
past or present in (``at``, ``id``) order; tasks arriving later are not in scope.
Tasks that changed meanwhile, or that a worker holds, are left alone and counted as
conflicts (a bulk run never forces).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from queues import conf, triage
from queues.entroq import EntroQ, ModifyArg, Task, inserting_into, ops
from queues.entroq.ops import BulkResult
from queues.entroq.tasks import TASK_STATES, check_queue
from queues.models import AuditEntry, BulkRun
from queues.models import Task as TaskRow
from queues.service import client

logger = logging.getLogger("queues.bulk")

BULK_QUEUE = "entroq/bulk"
WORKER_COMMAND = f"manage.py eqworker --handler queues.bulk.work --queue {BULK_QUEUE}"
ACTIONS = ("retry", "delete", "move")
CHUNK = ops.CHUNK
CONFLICT_SAMPLE = 20
LAST_ID = uuid.UUID(int=2**128 - 1)


class AlreadyRunning(Exception):
    """A run on the same scope is running; it is ``run``."""

    def __init__(self, run: BulkRun) -> None:
        super().__init__(f"bulk run #{run.pk} on this scope is still running")
        self.run = run


@dataclass(frozen=True)
class Scope:
    """Which tasks: those of ``queue`` in ``state`` (any if empty) with attempt ≥ n."""

    queue: str
    state: str = ""
    min_attempt: int = 0
    #: Only tasks whose error, normalized, is this (see ``queues.triage``).
    error_group: str = ""

    def __post_init__(self) -> None:
        check_queue(self.queue)
        if self.state and self.state not in TASK_STATES:
            raise ValueError(f"state must be one of {', '.join(TASK_STATES)}")
        if self.min_attempt < 0:
            raise ValueError("min_attempt must not be negative")

    @property
    def key(self) -> str:
        return json.dumps([self.queue, self.state, self.min_attempt, self.error_group])

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
        if self.error_group:
            parts.append(f"error like “{self.error_group}”")
        return ", ".join(parts)

    def holds(self, task: Task) -> bool:
        """Return whether ``task`` passes the filters SQL cannot apply."""
        return self.holds_err(task.err)

    def holds_err(self, err: str) -> bool:
        return not self.error_group or triage.normalize(err) == self.error_group

    def matching(self, now: datetime) -> QuerySet[TaskRow]:
        """Return the task rows in scope at ``now`` (a read; only backends write rows)."""
        rows = TaskRow.objects.filter(queue=self.queue)
        if self.state == "available":
            rows = rows.filter(at__lte=now)
        elif self.state == "claimed":
            rows = rows.filter(at__gt=now, claimant__isnull=False)
        elif self.state == "future":
            rows = rows.filter(at__gt=now, claimant__isnull=True)
        if self.min_attempt:
            rows = rows.filter(attempt__gte=self.min_attempt)
        return rows


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
    eq = client()
    rows = scope.matching(eq.time()).order_by("at", "id")
    if scope.error_group:
        ids = [i for i, e in rows.values_list("id", "err").iterator(2000) if scope.holds_err(e)]
        count, ids = len(ids), ids[:sample]
    else:
        count, ids = rows.count(), list(rows.values_list("id", flat=True)[:sample])
    return count, eq.tasks(ids=ids, omit_values=True) if ids else []


def start(
    user: AbstractBaseUser | AnonymousUser, action: str, scope: Scope, target: str = ""
) -> BulkRun:
    """Record a run and queue it for a worker; raise ``AlreadyRunning`` if one is."""
    action_of(action, target)  # refuse a bad action or target before anything is stored
    eq = client()
    with transaction.atomic():
        matching = scope.matching(eq.time())
        # The scope's end: the last task in (at, id) order that matches now.
        last = matching.order_by("-at", "-id").values_list("at", "id").first()
        total = plan(scope, sample=0)[0] if scope.error_group else matching.count()
        run = BulkRun(
            user_id=user.pk if user.is_authenticated else None,
            username=user.get_username(),
            action=action,
            queue=scope.queue,
            filters=scope.filters,
            target=target,
            bound_at=last[0] if last else timezone.now(),
            bound_id=last[1] if last else LAST_ID,
            total=total,
            scope=scope.key,
        )
        try:
            with transaction.atomic():
                run.save()
        except IntegrityError:
            running = BulkRun.objects.filter(scope=scope.key, status=BulkRun.Status.RUNNING)
            raise AlreadyRunning(running.get()) from None
        # In the same transaction: the run exists if and only if a worker will run it.
        eq.modify(inserting_into(BULK_QUEUE, value=str(run.pk).encode()))
    _log(run, f"started run #{run.pk} on {run.total:,} tasks")
    return run


def cancel(run: BulkRun, user: AbstractBaseUser | AnonymousUser | None = None) -> None:
    """Stop ``run`` after its current chunk."""
    stopped = BulkRun.objects.filter(pk=run.pk, status=BulkRun.Status.RUNNING).update(
        status=BulkRun.Status.CANCELLED, finished=timezone.now()
    )
    if stopped:
        run.refresh_from_db()
        who = f" by {user.get_username()}" if user is not None else ""
        _log(run, f"run #{run.pk} cancelled{who} after {run.done:,} done")


def work(task: Task) -> list[ModifyArg]:
    """The worker's handler: run the bulk run the task carries, then finish the task."""
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
    """Run ``run`` from its cursor to the end of its scope, saving progress per chunk."""
    eq = eq or client()
    scope = Scope(run.queue, **run.filters)
    act = action_of(run.action, run.target)
    pause = float(conf.get("BULK_PAUSE_SECONDS"))
    try:
        while True:
            run.refresh_from_db(fields=["status"])
            if run.status != BulkRun.Status.RUNNING:
                return run
            after = (run.cursor_at, run.cursor_id) if run.cursor_at and run.cursor_id else None
            page = eq.tasks(
                run.queue,
                after=after,
                before=_just_after(run.bound_at, run.bound_id),
                limit=CHUNK,
                state=scope.state,
                min_attempt=scope.min_attempt,
                omit_values=run.action != "retry",
            )
            if not page:
                break
            chosen = [task for task in page if scope.holds(task)]
            _save_progress(run, page[-1], ops.apply_each(eq, chosen, act, chunk=CHUNK))
            if between_chunks is not None:
                between_chunks(run)
            time.sleep(pause)  # let the queue's own workers have the database
    except Exception as error:
        from django.db import DatabaseError

        if isinstance(error, DatabaseError):
            raise  # an outage: the worker backs off, and the run resumes later
        logger.exception("bulk run #%s failed", run.pk)
        BulkRun.objects.filter(pk=run.pk).update(
            status=BulkRun.Status.FAILED, error=repr(error)[:2000], finished=timezone.now()
        )
        run.refresh_from_db()
        _log(run, f"run #{run.pk} failed: {error!r}")
        return run
    updated = BulkRun.objects.filter(pk=run.pk, status=BulkRun.Status.RUNNING).update(
        status=BulkRun.Status.DONE, finished=timezone.now()
    )
    run.refresh_from_db()
    if updated:
        _log(run, f"run #{run.pk} finished: {run.done:,} done, {run.conflicts:,} conflicts")
    return run


def _just_after(at: datetime, id: uuid.UUID) -> tuple[datetime, uuid.UUID]:
    """Return the bound just after (at, id): ``before`` bounds are strict."""
    if id.int < LAST_ID.int:
        return at, uuid.UUID(int=id.int + 1)
    return at + timedelta(microseconds=1), uuid.UUID(int=1)


def _save_progress(run: BulkRun, last: Task, result: BulkResult) -> None:
    run.done += len(result.done)
    run.conflicts += len(result.conflicts)
    room = CONFLICT_SAMPLE - len(run.conflict_sample)
    run.conflict_sample += [
        {"id": str(item.id), "version": item.version, "detail": why}
        for item, why in result.conflicts[: max(room, 0)]
    ]
    run.cursor_at, run.cursor_id = last.at, last.id
    run.save(update_fields=["done", "conflicts", "conflict_sample", "cursor_at", "cursor_id"])


def _log(run: BulkRun, detail: str) -> None:
    outcome = AuditEntry.Outcome.DONE
    if run.status in (BulkRun.Status.FAILED, BulkRun.Status.CANCELLED) or run.conflicts:
        outcome = AuditEntry.Outcome.PARTIAL if run.done else AuditEntry.Outcome.CONFLICT
    AuditEntry.objects.create(
        user_id=run.user_id,
        username=run.username,
        action=f"bulk {run.action}",
        queue=run.queue,
        target=run.target,
        outcome=outcome,
        detail=f"{detail} ({Scope(run.queue, **run.filters).describe()})",
    )
