"""Undo: what operators delete, move or retry is kept for a while, so that it can be
put back.

An operator's delete (from the dashboard, a bulk run, error triage or ``manage.py eq
rm/clear``), move or retry goes through ``Keeping``, a client that, in the same
transaction as each modification, writes what it deleted (ID, queue, value, attempt,
err, claims; of a retry, also the task that replaced it) or moved (ID, the version the
move made, the queue it came from) as ``KeptTask`` rows of one ``Undoable``, which
counts them. Workers use the plain client: finishing a task costs what it did.

``undo`` puts deleted tasks back with their original IDs and values (a task whose ID
has been taken again is a conflict, left out), moves moved tasks back, and takes back
retried tasks for their error-queue tasks, when they have not changed since; a chunk
at a time, bounded in tasks and bytes. A call does at most ``limit`` tasks, so no
request runs long, and says how many remain.

Kept rows are pruned ``KEEP_DELETED_SECONDS`` after the action by the bulk-run worker:
keeping a deletion schedules one carrier task, ``PRUNE_TASK_ID`` in the bulk queue,
which reschedules itself while anything is kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from queues import audit
from queues.actions import UNDO
from queues.conf import app_settings
from queues.entroq import (
    DependencyError,
    EntroQ,
    Modification,
    ModifyArg,
    Task,
    TaskData,
    TaskID,
    deleting,
    inserting,
    inserting_into,
    new_modification,
    ops,
)
from queues.models import AuditEntry, BulkRun, KeptTask, Undoable

# The actions whose changes are kept.
UNDOABLE_ACTIONS = ("delete", "move", "retry")
CHUNK = ops.CHUNK
# The most value bytes one statement writes or reads when keeping or putting back:
# a chunk of large values stays far from what a statement may carry.
CHUNK_BYTES = 64 << 20
# The most tasks one call of ``undo`` puts back: a request stays short, whatever the
# size of the bulk run undone; the command line calls it until nothing remains.
UNDO_PER_CALL = 10 * CHUNK
# Rows deleted a statement when pruning.
PRUNE_CHUNK = 1000
# The one carrier task of pruning (a fixed ID, so that it is scheduled at most once).
PRUNE_TASK_ID = uuid.UUID("6b1f5c1e-0d0a-4e55-9d6f-756e646f0001")
PRUNE_VALUE = b"prune kept deletions"
TAKEN_AGAIN = "its ID has been taken again"
REFUSED_NOW = "the store refuses it now: {}"
# A message's extra tags that offer an undo: this, then the undoable action's ID.
OFFER_TAG = "undo "


def keep_seconds() -> float:
    """Return how long deletions are kept (0: they are not)."""
    return app_settings().KEEP_DELETED_SECONDS


class Keeping(EntroQ):
    """A client that keeps what its modifications delete, and records what they move,
    in the same transaction as each modification.

    The values kept are those of the tasks it last listed (``tasks``): list with
    values what you will delete.
    """

    def __init__(self, eq: EntroQ, undoable: Undoable) -> None:
        super().__init__(eq.backend, claimant_id=eq.id)
        self.undoable = undoable
        self.kept = 0
        self._seen: dict[uuid.UUID, Task] = {}
        self._pruning_scheduled = False

    def tasks(self, *args: Any, **kwargs: Any) -> list[Task]:
        found = super().tasks(*args, **kwargs)
        self._seen.update((task.id, task) for task in found)
        return found

    def modify(
        self, *args: ModifyArg, claimant: uuid.UUID | None = None
    ) -> tuple[list[Task], list[Task]]:
        mod = new_modification(claimant, *args)
        undoable = self.undoable
        before = (undoable.pk, undoable.scope, undoable.left, undoable.left_bytes)
        scheduled = self._pruning_scheduled
        try:
            with transaction.atomic():
                inserted, changed, rows = self._modify_keeping(mod, args, claimant)
        except BaseException:
            # Rolled back: the undoable action is as it was (not saved, if it was new).
            undoable.pk, undoable.scope, undoable.left, undoable.left_bytes = before
            undoable._state.adding = undoable.pk is None
            self._pruning_scheduled = scheduled
            raise
        self.kept += len(rows)
        # What is done is no longer needed: a clear of millions keeps a chunk in memory.
        for done in [*(d.id for d in mod.deletes), *(t.id for t in changed)]:
            self._seen.pop(done, None)
        return inserted, changed

    def _modify_keeping(
        self, mod: Modification, args: tuple[ModifyArg, ...], claimant: uuid.UUID | None
    ) -> tuple[list[Task], list[Task], list[KeptTask]]:
        """Make the modification and keep what it deletes and moves (in a transaction)."""
        inserted, changed = super().modify(*args, claimant=claimant)
        replacements = {task.id: task for task in inserted}
        rows = [self._deleted(deleted, replacements) for deleted in mod.deletes]
        rows += [
            self._moved(task)
            for task in changed
            if task.id in self._seen and task.queue != self._seen[task.id].queue
        ]
        if rows:
            self._count(rows)
            for group in by_bytes(rows, lambda row: row.size):
                KeptTask.objects.bulk_create(group)
            if not self._pruning_scheduled:  # kept moves are pruned too
                self._schedule_pruning()
        return inserted, changed, rows

    def _deleted(self, deleted: TaskID, replacements: dict[uuid.UUID, Task]) -> KeptTask:
        task = self._seen.get(deleted.id)
        if task is None:
            raise ValueError(f"task {deleted.id} was not listed before its deletion: cannot keep")
        kept = KeptTask(
            task_id=task.id,
            queue=task.queue,
            version=task.version,
            value=task.value,
            size=len(task.value),
            attempt=task.attempt,
            err=task.err,
            claims=task.claims,
        )
        # A retry deletes an error-queue task and inserts the task it records.
        record = ops.error_record(task) if replacements else None
        replacement = replacements.get(record.task.id) if record is not None else None
        if replacement is not None:
            kept.replaced_by, kept.replaced_version = replacement.id, replacement.version
            kept.moved_to = replacement.queue
        return kept

    def _moved(self, task: Task) -> KeptTask:
        before = self._seen[task.id]
        return KeptTask(
            task_id=task.id,
            queue=before.queue,
            version=task.version,
            moved_to=task.queue,
            attempt=before.attempt,
            err=before.err,
        )

    def _count(self, rows: list[KeptTask]) -> None:
        """Save the undoable action with ``rows`` counted in, and give them to it."""
        queues = [q for row in rows for q in (row.queue, row.moved_to) if q]
        undoable = self.undoable
        if undoable.pk is None:
            undoable.scope = common_prefix(queues)
        else:
            # Locked: the executors of a bulk run keep into one undoable action at once.
            current = Undoable.objects.select_for_update().get(pk=undoable.pk)
            undoable.scope = common_prefix([current.scope, *queues])
            undoable.left, undoable.left_bytes = current.left, current.left_bytes
        undoable.left += len(rows)
        undoable.left_bytes += sum(row.size for row in rows)
        if undoable.pk is None:
            undoable.save()
        else:
            undoable.save(update_fields=["scope", "left", "left_bytes"])
        for row in rows:
            row.undoable = undoable

    def _schedule_pruning(self) -> None:
        # The bulk-run worker claims it when the oldest kept deletion is due; when
        # one is scheduled already, it is due sooner (and this insert is skipped).
        from queues.bulk import BULK_QUEUE  # queues.bulk keeps its runs' deletions here

        super().modify(
            inserting_into(
                BULK_QUEUE,
                id=PRUNE_TASK_ID,
                value=PRUNE_VALUE,
                arrival_in=keep_seconds(),
                skip_colliding=True,
            )
        )
        self._pruning_scheduled = True

    def finish(self, entry: AuditEntry | None = None) -> Undoable | None:
        """Return the undoable action (offered by ``entry``), or None if nothing was kept."""
        if self.undoable.pk is None:
            return None
        if entry is not None:
            self.undoable.entry = entry
            self.undoable.save(update_fields=["entry"])
        return self.undoable


def begin(
    eq: EntroQ,
    action: str,
    user: AbstractBaseUser | AnonymousUser | None = None,
    *,
    username: str = "",
    forced: bool = False,
) -> Keeping | None:
    """Return a client that keeps what ``action`` deletes or moves (``forced``: on
    tasks that others held), or None when nothing is kept (keeping is off, or the
    action is not undoable)."""
    if action not in UNDOABLE_ACTIONS or not keep_seconds():
        return None
    undoable = Undoable(
        user_id=user.pk if user is not None and user.is_authenticated else None,
        username=_who(user, username),
        action=action,
        forced=forced,
    )
    return Keeping(eq, undoable)


def _who(user: AbstractBaseUser | AnonymousUser | None, username: str) -> str:
    return username or (user.get_username() if user is not None else "")


def for_run(eq: EntroQ, run: BulkRun) -> Keeping | None:
    """Return a client that keeps what bulk ``run`` deletes or moves, in the run's
    undoable action (one for the whole run, whichever worker carries a chunk)."""
    if run.action not in UNDOABLE_ACTIONS or not keep_seconds():
        return None
    undoable = Undoable.objects.filter(run=run).first() or Undoable(
        user_id=run.user_id, username=run.username, action=run.action, run=run
    )
    return Keeping(eq, undoable)


def offer_tag(undoable: Undoable | None) -> str:
    """Return the extra tags of a message that offers to undo ``undoable`` (see
    ``_messages.html``), or "" when there is nothing to undo."""
    return f"{OFFER_TAG}{undoable.pk}" if undoable is not None else ""


def run_offer(run: BulkRun) -> tuple[int, int] | None:
    """Return the ID of the undoable action of ``run`` and how many of its tasks are
    still to put back, once the run has ended and if any are."""
    if run.status == BulkRun.Status.RUNNING:
        return None
    undoable = Undoable.objects.filter(run=run).first()
    left = pending(undoable) if undoable is not None else 0
    return (undoable.pk, left) if undoable is not None and left else None


def offer_in(run: BulkRun, entry: AuditEntry) -> None:
    """Have ``entry``, the audit entry of the end of ``run``, offer its undo."""
    Undoable.objects.filter(run=run, entry=None).update(entry=entry)


# Putting back.


@dataclass
class UndoResult:
    """What an undo did: tasks put back, those left alone and why, and those left to do."""

    done: list[TaskID] = field(default_factory=list)
    conflicts: list[tuple[TaskID, str]] = field(default_factory=list)
    remaining: int = 0
    #: The queues the tasks were put back into.
    queues: set[str] = field(default_factory=set)
    entry: AuditEntry | None = None


def pending(undoable: Undoable) -> int:
    """Return how many of the tasks of ``undoable`` an undo would still put back."""
    return Undoable.objects.filter(pk=undoable.pk).values_list("left", flat=True).first() or 0


def common_prefix(names: list[str]) -> str:
    """Return the longest text every one of ``names`` starts with."""
    if not names:
        return ""
    low, high = min(names), max(names)  # what these two share, all the others share
    size = 0
    while size < len(low) and low[size] == high[size]:
        size += 1
    return low[:size]


def by_bytes[Row](rows: list[Row], size: Callable[[Row], int]) -> Iterator[list[Row]]:
    """Yield ``rows`` in groups of at most ``CHUNK_BYTES`` (but one row at least)."""
    group: list[Row] = []
    total = 0
    for row in rows:
        if group and total + size(row) > CHUNK_BYTES:
            yield group
            group, total = [], 0
        group.append(row)
        total += size(row)
    if group:
        yield group


def refusal(undoable: Undoable) -> str:
    """Return why ``undoable`` cannot be undone now, or "" if it can."""
    run = undoable.run
    if run is not None and run.status == BulkRun.Status.RUNNING:
        return f"bulk run #{run.pk} is still running: cancel it, or wait for it to end"
    return ""


def undo(
    eq: EntroQ,
    undoable: Undoable,
    user: AbstractBaseUser | AnonymousUser | None = None,
    *,
    username: str = "",
    limit: int = UNDO_PER_CALL,
) -> UndoResult:
    """Put back up to ``limit`` of the tasks ``undoable`` deleted or moved, a chunk at
    a time (each chunk all or nothing with its bookkeeping), and audit it.

    Raise ``ValueError`` if it cannot be undone now (see ``refusal``).
    """
    why = refusal(undoable)
    if why:
        raise ValueError(why)
    result = UndoResult()
    while len(result.done) + len(result.conflicts) < limit:
        room = min(CHUNK, limit - len(result.done) - len(result.conflicts))
        with transaction.atomic():
            # Locked, so that two undos of one action never both put a task back.
            sizes = list(
                KeptTask.objects.select_for_update()
                .filter(undoable=undoable, state=KeptTask.State.KEPT)
                .order_by("pk")
                .values_list("pk", "size")[:room]
            )
            if not sizes:
                break
            first = next(by_bytes(sizes, lambda pair: pair[1]))
            rows = list(KeptTask.objects.filter(pk__in=[pk for pk, _ in first]).order_by("pk"))
            _put_back(eq, rows, result)
            Undoable.objects.filter(pk=undoable.pk).update(
                left=F("left") - len(rows), left_bytes=F("left_bytes") - sum(r.size for r in rows)
            )
    result.remaining = pending(undoable)
    who = _who(user, username)
    Undoable.objects.filter(pk=undoable.pk).update(undone=timezone.now(), undone_by=who)
    bulk_result = ops.BulkResult(result.done, result.conflicts, result.queues)
    origin = f"audit entry #{undoable.entry_id}" if undoable.entry_id else f"#{undoable.pk}"
    detail = f"undo of {undoable.action} ({origin})"
    if result.remaining:
        detail += f"; {result.remaining:,} still to put back"
    result.entry = audit.record(
        user or AnonymousUser(), UNDO, bulk_result, detail=detail, username=username
    )
    return result


def _put_back(eq: EntroQ, rows: list[KeptTask], result: UndoResult) -> None:
    deleted = [row for row in rows if not row.moved_to]
    moved = [row for row in rows if row.moved_to and row.replaced_by is None]
    retried = [row for row in rows if row.replaced_by is not None]
    left: dict[uuid.UUID, str] = {}
    if deleted:
        left.update(_insert_again(eq, deleted))
    if moved:
        left.update(_move_back(eq, moved))
    if retried:
        left.update(_unretry(eq, retried))
    for row in rows:
        result.queues.update(q for q in (row.queue, row.moved_to) if q)
        row.detail = left.get(row.task_id, "")
        row.state = KeptTask.State.CONFLICT if row.detail else KeptTask.State.RESTORED
        if row.state == KeptTask.State.RESTORED:
            row.value = b""  # back in the task table: no need to keep it twice
            result.done.append(TaskID(row.task_id, row.version))
        else:
            result.conflicts.append((TaskID(row.task_id, row.version), row.detail))
    KeptTask.objects.bulk_update(rows, ["state", "detail", "value"])


def _kept_data(row: KeptTask) -> TaskData:
    """Return the task ``row`` kept, to insert again where it was, with its ID."""
    return TaskData(row.queue, bytes(row.value), id=row.task_id, attempt=row.attempt, err=row.err)


def _insert_again(eq: EntroQ, rows: list[KeptTask]) -> dict[uuid.UUID, str]:
    """Insert ``rows`` again with their IDs; return those whose ID is taken, and why."""
    data = {row.task_id: _kept_data(row) for row in rows}
    left: dict[uuid.UUID, str] = {}
    while data:
        try:
            eq.modify(inserting(*data.values()))
            break
        except DependencyError as error:
            if not error.inserts or error.has_missing() or error.has_claims():
                raise
            for taken in error.inserts:
                data.pop(taken.id, None)
                left[taken.id] = TAKEN_AGAIN
        except ValueError:
            # One of them is refused now (a value over a lowered limit): one by one.
            for task_id, item in data.items():
                try:
                    eq.modify(inserting(item))
                except DependencyError:
                    left[task_id] = TAKEN_AGAIN
                except ValueError as refused:
                    left[task_id] = REFUSED_NOW.format(refused)
            break
    return left


def _move_back(eq: EntroQ, rows: list[KeptTask]) -> dict[uuid.UUID, str]:
    """Move ``rows`` back where they came from if unchanged since; return those left."""
    current = {t.id: t for t in eq.tasks(ids=[row.task_id for row in rows], omit_values=True)}
    now = eq.time()
    home = {row.task_id: row.queue for row in rows}
    left: dict[uuid.UUID, str] = {}
    ready = []
    for row in rows:
        task = current.get(row.task_id)
        if task is None:
            left[row.task_id] = "no longer exists (finished or deleted since)"
        elif task.version != row.version or task.queue != row.moved_to:
            left[row.task_id] = f"changed since the move (now version {task.version})"
        elif task.state(now) == "claimed" and task.claimant != eq.id:
            left[row.task_id] = f"claimed by {task.claimant}"
        else:
            ready.append(task)
    moved = ops.apply_each(eq, ready, lambda task: [task.as_change(queue=home[task.id])])
    left.update((item.id, why) for item, why in moved.conflicts)
    return left


def _unretry(eq: EntroQ, rows: list[KeptTask]) -> dict[uuid.UUID, str]:
    """Take back the tasks a retry inserted and put its error-queue tasks back, each
    pair only if the retried task is unchanged since; return those left, and why."""

    def swap(row: KeptTask) -> list[ModifyArg]:
        assert row.replaced_by is not None  # only retries are unretried
        return [deleting(row.replaced_by, row.replaced_version), inserting(_kept_data(row))]

    try:
        eq.modify(*(arg for row in rows for arg in swap(row)))
        return {}
    except (DependencyError, ValueError):
        pass  # one by one, to say which
    left: dict[uuid.UUID, str] = {}
    for row in rows:
        try:
            eq.modify(*swap(row))
        except DependencyError as error:
            left[row.task_id] = (
                TAKEN_AGAIN
                if error.inserts
                else f"its retried task {row.replaced_by} has run or changed since"
            )
        except ValueError as refused:
            left[row.task_id] = REFUSED_NOW.format(refused)
    return left


# Pruning and counting.


def prune(now: datetime | None = None) -> int:
    """Delete what was kept longer than ``KEEP_DELETED_SECONDS``, a chunk a statement;
    return how many tasks' rows were deleted."""
    cutoff = (now or timezone.now()) - timedelta(seconds=keep_seconds())
    pruned = 0
    while True:
        old = KeptTask.objects.filter(undoable__created__lt=cutoff)
        pks = list(old.values_list("pk", flat=True)[:PRUNE_CHUNK])
        if not pks:
            break
        pruned += KeptTask.objects.filter(pk__in=pks).delete()[0]
    Undoable.objects.filter(created__lt=cutoff).delete()
    return pruned


def work_pruning(task: Task) -> list[ModifyArg]:
    """The bulk-run worker's handling of the pruning carrier: prune, then schedule the
    next pruning when the oldest kept action is due, or end while none is kept."""
    prune()
    oldest = Undoable.objects.order_by("created").values_list("created", flat=True).first()
    if oldest is None:
        return [task.as_deletion()]
    due = oldest + timedelta(seconds=keep_seconds()) - timezone.now()
    return [task.as_change(arrival_in=max(due.total_seconds(), 1.0))]


@dataclass(frozen=True)
class KeptSummary:
    """How much is kept for undo: deleted tasks, the bytes kept (theirs, and those of
    the error-queue tasks retries replaced), and moved or retried tasks."""

    deleted: int
    bytes: int
    moved: int
    hours: float


def kept_summary() -> KeptSummary:
    """Return how much is kept for undo now."""
    deletions = Q(action="delete")
    totals = Undoable.objects.aggregate(
        deleted=Sum("left", filter=deletions),
        bytes=Sum("left_bytes"),
        moved=Sum("left", filter=~deletions),
    )
    return KeptSummary(
        deleted=totals["deleted"] or 0,
        bytes=totals["bytes"] or 0,
        moved=totals["moved"] or 0,
        hours=keep_seconds() / 3600,
    )


def pending_by_entry(entry_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Return, for each of the audit entries that offers an undo, its undoable
    action's ID and how many of its tasks are still to put back."""
    rows = Undoable.objects.filter(entry__in=entry_ids, left__gt=0).values_list(
        "entry", "pk", "left"
    )
    return {entry: (undoable, left) for entry, undoable, left in rows}


def outcome(undoable: Undoable, result: UndoResult) -> tuple[int, str]:
    """Return the message level and text that say what came of an undo."""
    done = len(result.done)
    tasks = f"{done} task{'' if done == 1 else 's'}"
    text = {
        "move": f"Moved back {tasks}.",
        "retry": f"Returned {tasks} to the error queue, taking back the retry.",
    }.get(undoable.action, f"Put back {tasks}.")
    level = messages.SUCCESS
    if result.conflicts:
        reasons = "; ".join(f"{item.id}: {why}" for item, why in result.conflicts[:5])
        more = len(result.conflicts) - 5
        if more > 0:
            reasons += f"; and {more} more"
        text = f"{text[:-1]}; left {len(result.conflicts)} out: {reasons}."
        level = messages.WARNING if done else messages.ERROR
    if result.remaining:
        text += f" {result.remaining:,} still to put back: undo again to go on."
        level = messages.WARNING
    return level, text


def recent(limit: int = 50) -> list[tuple[Undoable, int]]:
    """Return the latest undoable actions, each with how many tasks it would still put back."""
    return [
        (undoable, undoable.left) for undoable in Undoable.objects.select_related("entry")[:limit]
    ]
