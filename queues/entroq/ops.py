"""Operator actions on many tasks, shared by the command line and the dashboard."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .client import EntroQ
from .errors import DependencyError, ErrorTaskValue
from .modify import ModifyArg, inserting
from .tasks import Task, TaskData, TaskID

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


@dataclass
class BulkResult:
    """What a bulk action did: tasks done, and those left alone with the reason."""

    done: list[TaskID] = field(default_factory=list)
    conflicts: list[tuple[TaskID, str]] = field(default_factory=list)


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
