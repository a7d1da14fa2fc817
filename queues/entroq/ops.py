"""Operator actions on many tasks, shared by the command line and the dashboard."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .client import EntroQ
from .errors import DependencyError, ErrorTaskValue, default_err_qmap
from .modify import ModifyArg, inserting
from .tasks import Task, TaskData, TaskID, check_queue, check_value

CHUNK = 500


def retrying(error_task: Task) -> list[ModifyArg]:
    """Return the modification that puts an error-queue task back where it failed.

    The original task returns to its original queue with its original ID, value,
    attempt count and error text, available now; the error-queue task is deleted.
    Raises ``ValueError`` if the task's value is not an ``ErrorTaskValue``.
    """
    original = ErrorTaskValue.from_json(error_task.value).task
    return [
        error_task.as_deletion(),
        inserting(
            TaskData(
                queue=original.queue,
                value=original.value,
                id=original.id,
                attempt=original.attempt,
                err=original.err,
            )
        ),
    ]


def error_record(task: Task) -> ErrorTaskValue | None:
    """Return the failure ``task`` records, if it is a task of an error queue.

    It is when its value is an ``ErrorTaskValue`` whose task's error queue (by
    ``default_err_qmap``) is the queue ``task`` is in: a value that merely looks like
    one elsewhere must not send a task to the queue it names.
    """
    if not task.value.startswith(b"{"):
        return None
    try:
        record = ErrorTaskValue.from_json(task.value)
    except ValueError:
        return None
    return record if default_err_qmap(record.task.queue) == task.queue else None


def retry(task: Task) -> list[ModifyArg]:
    """Return the modification that retries ``task``, available now.

    An error-queue task (see :func:`error_record`; it needs the value) goes back to
    its original queue with :func:`retrying`; any other task is released.
    """
    return retrying(task) if error_record(task) else release(task)


def release(task: Task) -> list[ModifyArg]:
    """Return the modification that makes ``task`` available now, ending any claim."""
    return [task.as_change()]


def delete(task: Task) -> list[ModifyArg]:
    return [task.as_deletion()]


def moving(queue: str) -> Callable[[Task], list[ModifyArg]]:
    """Return an action that moves a task to ``queue``, available now."""
    check_queue(queue)
    return lambda task: [task.as_change(queue=queue)]


def editing(value: bytes) -> Callable[[Task], list[ModifyArg]]:
    """Return an action that replaces a task's value and makes it available now."""
    check_value(value)
    return lambda task: [task.as_change(value=value)]


@dataclass
class BulkResult:
    """What a bulk action did: tasks done, and those left alone with the reason."""

    done: list[TaskID] = field(default_factory=list)
    conflicts: list[tuple[TaskID, str]] = field(default_factory=list)
    #: The queues the tasks were in before the action (when known).
    queues: set[str] = field(default_factory=set)


def apply_each(
    eq: EntroQ,
    tasks: Iterable[Task],
    action: Callable[[Task], Sequence[ModifyArg]],
    *,
    force: bool = False,
    chunk: int = CHUNK,
    progress: Callable[[BulkResult], None] | None = None,
) -> BulkResult:
    """Apply ``action`` to ``tasks``, ``chunk`` tasks a modification.

    A chunk is all or nothing; when it fails, its tasks are tried one by one so that
    one changed or held task does not hold back the rest: it is reported as a
    conflict. ``force`` acts as each task's claimant, so held tasks are acted on too.
    """
    result = BulkResult()
    batch: list[Task] = []

    def flush() -> None:
        if batch:
            try:
                eq.modify(*(arg for task in batch for arg in action(task)))
                result.done.extend(t.id_version() for t in batch)
            except (DependencyError, ValueError):
                for task in batch:
                    _apply_one(eq, task, action, force, result)
            batch.clear()
        if progress is not None:
            progress(result)

    for task in tasks:
        if force and task.claimant not in (None, eq.id):
            _apply_one(eq, task, action, force, result)
            continue
        batch.append(task)
        if len(batch) >= chunk:
            flush()
    flush()
    return result


def _apply_one(
    eq: EntroQ,
    task: Task,
    action: Callable[[Task], Sequence[ModifyArg]],
    force: bool,
    result: BulkResult,
) -> None:
    try:
        eq.modify(*action(task), claimant=acting_claimant(task, force))
        result.done.append(task.id_version())
    except (DependencyError, ValueError) as error:
        result.conflicts.append((task.id_version(), str(error)))


def apply_to_versions(
    eq: EntroQ,
    items: Iterable[TaskID],
    action: Callable[[Task], Sequence[ModifyArg]],
    *,
    force: bool = False,
    values: bool = False,
) -> BulkResult:
    """Apply ``action`` to the task versions ``items``, as an operator saw them.

    A task that is gone, has another version, or is held by another claimant (unless
    ``force``) is reported as a conflict and left alone, so an action never lands on
    a task the operator did not see. ``values`` loads the values ``action`` needs.
    """
    wanted = list({item.id: item for item in items}.values())
    current = {t.id: t for t in eq.tasks(ids=[i.id for i in wanted], omit_values=not values)}
    now = eq.time()
    result, ready = BulkResult(queues={t.queue for t in current.values()}), []
    for item in wanted:
        task = current.get(item.id)
        if task is None:
            result.conflicts.append((item, "no longer exists (finished or deleted meanwhile)"))
        elif task.version != item.version:
            result.conflicts.append((item, f"changed meanwhile (now version {task.version})"))
        elif not force and task.state(now) == "claimed" and task.claimant != eq.id:
            result.conflicts.append((item, f"claimed by {task.claimant}; needs force"))
        else:
            ready.append(task)
    applied = apply_each(eq, ready, action, force=force)
    result.done.extend(applied.done)
    result.conflicts.extend(applied.conflicts)
    return result


def acting_claimant(task: Task, force: bool) -> uuid.UUID | None:
    """Return the claimant to modify ``task`` as: its holder when forced, else the client."""
    return task.claimant if force and task.claimant else None


def walk(eq: EntroQ, queue: str, *, page: int = CHUNK, values: bool = True) -> Iterator[Task]:
    """Yield the tasks that are in ``queue`` now, ``page`` at a time.

    The IDs are read first (without values), so an action that removes tasks as it
    goes, or tasks that arrive meanwhile, do not disturb the walk; a task that has
    left the queue by the time its page is read is skipped.
    """
    ids = [t.id for t in eq.tasks(queue, omit_values=True)]
    for start in range(0, len(ids), page):
        yield from eq.tasks(queue, ids=ids[start : start + page], omit_values=not values)
