"""Modifications: the builders passed to ``EntroQ.modify`` and the checks every backend runs."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from .errors import DependencyError
from .tasks import (
    Duration,
    Task,
    TaskData,
    TaskID,
    as_uuid,
    aware_utc,
    check_attempt,
    check_err,
    check_queue,
    check_value,
    seconds,
)


@dataclass(frozen=True, slots=True)
class TaskChange:
    """The new state of a changed task, which must still be at ``version``.

    A field left ``None`` keeps what is stored: ``queue``, ``value`` (renewals need not
    send it back), ``attempt`` and ``err``. The task arrives at ``at``, or
    ``arrival_in`` seconds after the store's clock when the change is applied, or, with
    neither, now by the store's clock: a plain change releases the task.

    ``known_value``, when the change keeps the value, is the value of the task the change
    was made from: the changed task comes back with it, so that the store neither reads
    nor sends the stored one (a renewal of a large task costs no more than of a small
    one). It is the stored value, unless that task was listed without values.
    """

    id: uuid.UUID
    version: int
    queue: str | None = None
    value: bytes | None = None
    at: datetime | None = None
    attempt: int | None = None
    err: str | None = None
    arrival_in: float | None = None
    known_value: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.at is not None and self.arrival_in is not None:
            raise ValueError("give at or arrival_in, not both")

    def id_version(self) -> TaskID:
        return TaskID(self.id, self.version)

    def arrival(self, now: datetime) -> datetime:
        """Return when the changed task arrives, if the store's clock reads ``now``."""
        return arrival(self.at, self.arrival_in, now)

    def answered_value(self) -> bytes | None:
        """Return the value the changed task comes back with, if known without the store."""
        return self.known_value if self.value is None else self.value


def arrival(at: datetime | None, arrival_in: float | None, now: datetime) -> datetime:
    """Return when a task arrives: at ``at``, else ``arrival_in`` after ``now``, else now."""
    if at is not None:
        return at
    return now if arrival_in is None else now + timedelta(seconds=arrival_in)


@dataclass
class Modification:
    """Everything one ``modify`` does, all or nothing."""

    claimant: uuid.UUID | None = None
    inserts: list[TaskData] = field(default_factory=list)
    changes: list[TaskChange] = field(default_factory=list)
    deletes: list[TaskID] = field(default_factory=list)
    depends: list[TaskID] = field(default_factory=list)

    def referenced_ids(self) -> list[uuid.UUID]:
        """Return every ID the store must look up: explicit inserts, changes, deletes, depends."""
        ids = [d.id for d in self.inserts if d.id is not None]
        ids += [c.id for c in self.changes]
        ids += [d.id for d in self.deletes]
        ids += [d.id for d in self.depends]
        return ids

    def check(self, max_value_bytes: int) -> None:
        """Raise ``ValueError`` if the modification is malformed or breaks a limit.

        An ID may appear once in one modification; values must fit ``max_value_bytes``.
        """
        seen: set[uuid.UUID] = set()
        for task_id in self.referenced_ids():
            if task_id in seen:
                raise ValueError(f"task {task_id} appears more than once in one modification")
            seen.add(task_id)
        items: list[TaskData | TaskChange] = [*self.inserts, *self.changes]
        for item in items:
            if item.value is not None and len(item.value) > max_value_bytes:
                where = f"task {item.id}" if item.queue is None else f"queue {item.queue!r}"
                raise ValueError(
                    f"value of {len(item.value)} bytes for {where} is over "
                    f"the limit of {max_value_bytes} bytes"
                )

    def dependency_error(
        self, found: Mapping[uuid.UUID, tuple[int, bool]]
    ) -> DependencyError | None:
        """Return every problem with this modification, or ``None`` if it can proceed.

        ``found`` maps each referenced ID that exists to its version and whether
        another claimant holds it (claimant set, not the modifier, ``at`` in the future).
        """
        error = DependencyError()
        for data in self.inserts:
            if data.id is not None and data.id in found:
                error.inserts.append(TaskID(data.id, 0))
        for wanted in self.depends:
            if found.get(wanted.id, (None,))[0] != wanted.version:
                error.depends.append(wanted)
        for problems, wanted in [
            *((error.deletes, d) for d in self.deletes),
            *((error.changes, c.id_version()) for c in self.changes),
        ]:
            current = found.get(wanted.id)
            if current is None or current[0] != wanted.version:
                problems.append(wanted)
            elif current[1]:
                error.claims.append(wanted)
        return None if error.is_empty() else error

    def without_inserts(self, ids: Iterable[uuid.UUID]) -> Modification:
        dropped = set(ids)
        kept = [d for d in self.inserts if d.id not in dropped]
        return dataclasses.replace(self, inserts=kept)


def inserted_task(data: TaskData, claimant: uuid.UUID | None, now: datetime) -> Task:
    """Return the task an insert of ``data`` makes at ``now``, by ``claimant``.

    Version and claims start at 0; ``at`` defaults to now (plus ``arrival_in``); the
    inserter is the claimant (so a task inserted into the future is held by it until it
    arrives).
    """
    return Task(
        queue=data.queue,
        id=data.id or uuid.uuid4(),
        version=0,
        at=arrival(data.at, data.arrival_in, now),
        claimant=claimant,
        claims=0,
        value=data.value,
        created=now,
        modified=now,
        attempt=data.attempt,
        err=data.err,
    )


ModifyArg = Callable[[Modification], None]

_UNSET: Final[Any] = object()


def inserting_into(
    queue: str,
    *,
    value: bytes = b"",
    at: datetime | None = None,
    arrival_in: Duration | None = None,
    id: uuid.UUID | None = None,
    skip_colliding: bool = False,
    attempt: int = 0,
    err: str = "",
) -> ModifyArg:
    """Insert a task into ``queue``, available at ``at``, or ``arrival_in`` after the
    store's clock reads when the insert is applied."""
    return inserting(
        TaskData(
            queue=queue,
            value=value,
            at=at,
            id=id,
            skip_colliding=skip_colliding,
            attempt=attempt,
            err=err,
            arrival_in=None if arrival_in is None else seconds(arrival_in, "arrival_in"),
        )
    )


def inserting(*task_data: TaskData) -> ModifyArg:
    """Insert tasks described by ``TaskData``."""
    for data in task_data:
        if not isinstance(data, TaskData):
            raise TypeError(f"inserting takes TaskData, not {type(data).__name__}")

    def apply(mod: Modification) -> None:
        mod.inserts.extend(task_data)

    return apply


def changing(
    task: Task,
    *,
    queue: str = _UNSET,
    value: bytes = _UNSET,
    at: datetime | None = _UNSET,
    arrival_in: Duration = _UNSET,
    attempt: int = _UNSET,
    err: str = _UNSET,
) -> ModifyArg:
    """Change ``task`` (at its current version), keeping every field not given.

    ``at`` is the exception: when neither ``at`` nor ``arrival_in`` is given the task
    arrives now, which releases any claim on it. ``arrival_in`` is added to the store's
    clock when the change is applied, so a client whose clock is off still renews.
    """
    if not isinstance(task, Task):
        raise TypeError(f"changing takes a Task, not {type(task).__name__}")
    change = TaskChange(
        id=task.id,
        version=task.version,
        queue=None if queue is _UNSET else check_queue(queue),
        value=None if value is _UNSET else check_value(value),
        known_value=task.value if value is _UNSET else None,
        at=None if at is _UNSET or at is None else aware_utc(at),
        arrival_in=None if arrival_in is _UNSET else seconds(arrival_in, "arrival_in"),
        attempt=None if attempt is _UNSET else check_attempt(attempt),
        err=None if err is _UNSET else check_err(err),
    )

    def apply(mod: Modification) -> None:
        mod.changes.append(change)

    return apply


def _task_id(id: uuid.UUID, version: int) -> TaskID:
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"version must be a non-negative int, got {version!r}")
    return TaskID(as_uuid(id), version)


def deleting(id: uuid.UUID, version: int) -> ModifyArg:
    """Delete the task ``id`` at ``version``."""
    task_id = _task_id(id, version)

    def apply(mod: Modification) -> None:
        mod.deletes.append(task_id)

    return apply


def depending_on(id: uuid.UUID, version: int) -> ModifyArg:
    """Require the task ``id`` to exist at ``version``, without changing it."""
    task_id = _task_id(id, version)

    def apply(mod: Modification) -> None:
        mod.depends.append(task_id)

    return apply


def with_modification(modification: Modification) -> ModifyArg:
    """Merge another modification into this one; its claimant is ignored."""

    def apply(mod: Modification) -> None:
        mod.inserts.extend(modification.inserts)
        mod.changes.extend(modification.changes)
        mod.deletes.extend(modification.deletes)
        mod.depends.extend(modification.depends)

    return apply


def new_modification(claimant: uuid.UUID | None, *args: ModifyArg) -> Modification:
    """Build a modification from modify arguments (Go's ``NewModification``)."""
    mod = Modification(claimant=claimant)
    for arg in args:
        if not callable(arg):
            raise TypeError(f"modify takes modify arguments, not {type(arg).__name__}")
        arg(mod)
    return mod
