"""Tasks and the values that describe them: ``Task``, ``TaskID``, ``TaskData``, ``QueueStat``."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .modify import ModifyArg

# Queue names index well (a B-tree entry holds at most about 2,700 bytes) and stay
# readable in a dashboard; 4 bytes a character at most keeps 500 well inside.
MAX_QUEUE_LENGTH = 500
# Error texts are for people; a worker that wants to keep more belongs in the value.
MAX_ERR_LENGTH = 65_536
DEFAULT_MAX_VALUE_BYTES = 10 * 1024 * 1024
# Durations beyond a century are mistakes (and overflow timedelta and the databases).
MAX_DURATION_SECONDS = 100 * 365 * 24 * 3600.0
TASK_STATES = ("available", "claimed", "future")

Duration = float | int | timedelta


def utcnow() -> datetime:
    """Return the time this process thinks it is, in UTC (Go's ``ProcessTime``)."""
    return datetime.now(UTC)


def seconds(duration: Duration, name: str = "duration") -> float:
    """Return ``duration`` (seconds or a ``timedelta``) as non-negative float seconds."""
    if isinstance(duration, timedelta):
        value = duration.total_seconds()
    elif isinstance(duration, int | float) and not isinstance(duration, bool):
        value = float(duration)
    else:
        raise TypeError(f"{name} must be seconds or a timedelta, not {type(duration).__name__}")
    if value != value:
        raise ValueError(f"{name} must be a number of seconds, got NaN")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value} s")
    if value > MAX_DURATION_SECONDS:
        raise ValueError(f"{name} of {value} s is over the limit of 100 years")
    return value


def aware_utc(moment: datetime, name: str = "at") -> datetime:
    """Return ``moment`` in UTC; refuse naive datetimes, whose meaning is a guess."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {moment.isoformat()})")
    return moment.astimezone(UTC)


def as_uuid(value: Any, name: str = "id") -> uuid.UUID:
    """Return ``value`` as a UUID; accept UUID objects and their string forms.

    The nil UUID is refused: EntroQ's Go API uses it to mean "none".
    """
    if isinstance(value, str):
        try:
            value = uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{name} is not a UUID: {value!r}") from None
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"{name} must be a UUID, not {type(value).__name__}")
    if value.int == 0:
        raise ValueError(f"{name} must not be the nil UUID (use None for none)")
    return value


def check_queue(queue: Any, name: str = "queue") -> str:
    """Return ``queue`` if it is a valid queue name, else raise ``ValueError``."""
    if not isinstance(queue, str):
        raise TypeError(f"{name} must be a str, not {type(queue).__name__}")
    if not queue:
        raise ValueError(f"{name} must not be empty")
    if len(queue) > MAX_QUEUE_LENGTH:
        raise ValueError(f"{name} is {len(queue)} characters long; the limit is {MAX_QUEUE_LENGTH}")
    if "\x00" in queue:
        raise ValueError(f"{name} must not contain NUL characters")
    return queue


def parse_json(data: bytes | str) -> Any:
    """Return what the JSON ``data`` holds; ``ValueError`` if it is not JSON, or is nested
    too deeply for this process (where Python's parser raises ``RecursionError``)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def check_value(value: Any) -> bytes:
    """Return ``value`` as bytes; text must be encoded by the caller."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"value must be bytes, not {type(value).__name__} (encode text first)")


def check_err(err: Any) -> str:
    if not isinstance(err, str):
        raise TypeError(f"err must be a str, not {type(err).__name__}")
    if len(err) > MAX_ERR_LENGTH:
        raise ValueError(f"err is {len(err)} characters long; the limit is {MAX_ERR_LENGTH}")
    if "\x00" in err:
        raise ValueError("err must not contain NUL characters")
    return err


def check_attempt(attempt: Any) -> int:
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise TypeError(f"attempt must be an int, not {type(attempt).__name__}")
    if not 0 <= attempt < 2**31:
        raise ValueError(f"attempt must be between 0 and 2**31 - 1, got {attempt}")
    return attempt


@dataclass(frozen=True, slots=True)
class TaskID:
    """The identity of one version of a task: operations on other versions fail."""

    id: uuid.UUID
    version: int

    def __str__(self) -> str:
        return f"{self.id}:{self.version}"

    def as_deletion(self) -> ModifyArg:
        """Return a modify argument that deletes this task version."""
        from .modify import deleting

        return deleting(self.id, self.version)

    def as_dependency(self) -> ModifyArg:
        """Return a modify argument that requires this task version to exist."""
        from .modify import depending_on

        return depending_on(self.id, self.version)


@dataclass(frozen=True, slots=True)
class TaskData:
    """What an insert needs: the queue, the value, and optionally ``at`` and ``id``.

    ``arrival_in``, instead of ``at``, is a number of seconds added to the store's
    clock when the insert is applied.
    """

    queue: str
    value: bytes = b""
    at: datetime | None = None
    id: uuid.UUID | None = None
    skip_colliding: bool = False
    attempt: int = 0
    err: str = ""
    arrival_in: float | None = None

    def __post_init__(self) -> None:
        check_queue(self.queue)
        object.__setattr__(self, "value", check_value(self.value))
        if self.at is not None:
            object.__setattr__(self, "at", aware_utc(self.at))
        if self.arrival_in is not None:
            if self.at is not None:
                raise ValueError("give at or arrival_in, not both")
            object.__setattr__(self, "arrival_in", seconds(self.arrival_in, "arrival_in"))
        if self.id is not None:
            object.__setattr__(self, "id", as_uuid(self.id))
        check_attempt(self.attempt)
        check_err(self.err)

    def __str__(self) -> str:
        at = self.at.isoformat() if self.at else "now"
        if self.arrival_in is not None:
            at = f"now + {self.arrival_in:g} s"
        return f"TaskData(queue={self.queue!r}, id={self.id}, at={at}, {len(self.value)} bytes)"


@dataclass(frozen=True, slots=True)
class Task:
    """A unit of work: a byte value in a queue, with its version, arrival time and claim.

    ``claims`` counts successful claims; ``version`` counts every modification.
    """

    queue: str
    id: uuid.UUID
    version: int
    at: datetime
    claimant: uuid.UUID | None
    claims: int
    value: bytes
    created: datetime
    modified: datetime
    attempt: int = 0
    err: str = ""

    def __str__(self) -> str:
        claimant = self.claimant or "-"
        return (
            f"Task {self.id}:{self.version} in {self.queue!r} at {self.at.isoformat()} "
            f"claimant {claimant} claims {self.claims} attempt {self.attempt} "
            f"({len(self.value)} bytes)"
        )

    def id_version(self) -> TaskID:
        return TaskID(self.id, self.version)

    def state(self, now: datetime) -> str:
        """Return ``"available"``, ``"claimed"`` or ``"future"`` (see ``QueueStat``)."""
        if self.at <= now:
            return "available"
        return "future" if self.claimant is None else "claimed"

    def data(self) -> TaskData:
        """Return this task's data, for inserting a copy of it."""
        return TaskData(
            queue=self.queue,
            value=self.value,
            at=self.at,
            id=self.id,
            attempt=self.attempt,
            err=self.err,
        )

    def copy_omit_value(self) -> Task:
        return dataclasses.replace(self, value=b"")

    def as_change(self, **changes: Any) -> ModifyArg:
        """Return a modify argument that changes this task; see :func:`changing`."""
        from .modify import changing

        return changing(self, **changes)

    def as_deletion(self) -> ModifyArg:
        return self.id_version().as_deletion()

    def as_dependency(self) -> ModifyArg:
        return self.id_version().as_dependency()


@dataclass(frozen=True, slots=True)
class QueueStat:
    """Counts for one queue.

    ``available`` tasks have arrived (``at <= now``); ``claimed`` tasks are held by a
    claimant until a future ``at``; ``future`` tasks have not arrived and nobody holds
    them. ``size`` is their sum. Two stats are equal when these six fields are.

    ``earliest``, beyond the contract, is the smallest ``at`` in the queue: when it is
    not in the future, it is when the oldest available task arrived (the dashboard
    shows how long that task has waited). It takes no part in comparison or repr.
    """

    name: str
    size: int = 0
    claimed: int = 0
    available: int = 0
    future: int = 0
    max_claims: int = 0
    earliest: datetime | None = dataclasses.field(default=None, compare=False, repr=False)
