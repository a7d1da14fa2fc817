"""Exceptions of the client API, and ``ErrorTaskValue``, the value of a task in an error queue."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .tasks import (
    MAX_QUEUE_LENGTH,
    Task,
    TaskID,
    as_uuid,
    check_attempt,
    check_err,
    check_queue,
    parse_json,
)

NIL_UUID = uuid.UUID(int=0)


@dataclass(eq=False)
class DependencyError(Exception):
    """A modification could not proceed; every problem found is listed at once.

    - ``inserts``: explicit insert IDs that already exist (in any queue);
    - ``depends``, ``deletes``, ``changes``: task versions that are missing or stale;
    - ``claims``: tasks that another claimant holds (changes and deletes only).
    """

    inserts: list[TaskID] = field(default_factory=list)
    depends: list[TaskID] = field(default_factory=list)
    deletes: list[TaskID] = field(default_factory=list)
    changes: list[TaskID] = field(default_factory=list)
    claims: list[TaskID] = field(default_factory=list)
    message: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def has_missing(self) -> bool:
        """Return whether a depended, deleted or changed task was missing or stale."""
        return bool(self.depends or self.deletes or self.changes)

    def has_claims(self) -> bool:
        """Return whether a task was held by another claimant."""
        return bool(self.claims)

    def has_collisions(self) -> bool:
        """Return whether an explicit insert ID already existed."""
        return bool(self.inserts)

    def is_empty(self) -> bool:
        return not (self.has_missing() or self.has_claims() or self.has_collisions())

    def __str__(self) -> str:
        parts = [self.message] if self.message else []
        for label, ids in (
            ("colliding inserts", self.inserts),
            ("missing or stale depends", self.depends),
            ("missing or stale deletes", self.deletes),
            ("missing or stale changes", self.changes),
            ("held by another claimant", self.claims),
        ):
            if ids:
                parts.append(f"{label}: {', '.join(str(i) for i in ids)}")
        return "; ".join(parts) or "dependency error"


class MoveTaskError(Exception):
    """Raised by worker code to move the task into its error queue."""

    def __init__(self, err: BaseException | str) -> None:
        super().__init__(str(err))
        self.err = err


class RetryTaskError(Exception):
    """Raised by worker code to retry the task later, counting the attempt."""

    def __init__(self, err: BaseException | str) -> None:
        super().__init__(str(err))
        self.err = err


class BackendUnavailable(ConnectionError):
    """The store cannot be reached now (a server down, a connection refused): try later."""


class ClaimTimeout(TimeoutError):
    """A blocking claim found no task before its timeout."""


def _format_time(moment: datetime) -> str:
    # Go's RFC 3339 with a Z, the form encoding/json gives time.Time.
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_FRACTION = re.compile(r"\.(\d+)")


def _parse_time(text: str) -> datetime:
    # Go writes up to nine fractional digits; Python keeps six.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return moment.astimezone(UTC)


def task_to_json_dict(task: Task) -> dict[str, Any]:
    """Return the task as Go's ``encoding/json`` writes an EntroQ ``Task``."""
    return {
        "queue": task.queue,
        "id": str(task.id),
        "version": task.version,
        "at": _format_time(task.at),
        "claimant": str(task.claimant or NIL_UUID),
        "claims": task.claims,
        "value": base64.b64encode(task.value).decode("ascii"),
        "created": _format_time(task.created),
        "modified": _format_time(task.modified),
        "attempt": task.attempt,
        "err": task.err,
    }


def task_from_json_dict(data: dict[str, Any]) -> Task:
    """Return the task Go's JSON describes; ``ValueError`` or ``TypeError`` if it is not one.

    The fields are checked as an insert checks them, since the task may be put back.
    """
    claimant = uuid.UUID(data.get("claimant") or str(NIL_UUID))
    return Task(
        queue=check_queue(data["queue"]),
        id=as_uuid(data["id"]),
        version=int(data["version"]),
        at=_parse_time(data["at"]),
        claimant=None if claimant == NIL_UUID else claimant,
        claims=int(data.get("claims", 0)),
        value=base64.b64decode(data.get("value") or "", validate=True),
        created=_parse_time(data["created"]),
        modified=_parse_time(data["modified"]),
        attempt=check_attempt(int(data.get("attempt", 0))),
        err=check_err(data.get("err", "")),
    )


@dataclass(frozen=True)
class ErrorTaskValue:
    """A task moved to an error queue, with the error that sent it there."""

    task: Task
    err: str

    def to_json(self) -> bytes:
        return json.dumps({"task": task_to_json_dict(self.task), "err": self.err}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ErrorTaskValue:
        """Parse the JSON that ``to_json`` (or Go's EntroQ) writes; ``ValueError`` if not."""
        try:
            parsed = parse_json(data)
            return cls(task=task_from_json_dict(parsed["task"]), err=str(parsed.get("err", "")))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an ErrorTaskValue: {exc}") from exc


#: What names an error queue: ``default_err_qmap`` appends it to the inbox.
ERROR_SUFFIX = "/err"


def default_err_qmap(inbox: str) -> str:
    """Return the error queue of ``inbox``: ``inbox + "/err"``.

    An inbox within a few characters of the limit on queue names has no room for the
    suffix: its error queue keeps the start of its name, a digest of the whole name (so
    that two long inboxes never share an error queue), and the suffix. So every valid
    inbox, an error queue included, has a valid error queue.
    """
    queue = inbox + ERROR_SUFFIX
    if len(queue) <= MAX_QUEUE_LENGTH:
        return queue
    digest = hashlib.sha256(inbox.encode()).hexdigest()[:16]
    kept = MAX_QUEUE_LENGTH - len(ERROR_SUFFIX) - len(digest) - 1
    return f"{inbox[:kept]}~{digest}{ERROR_SUFFIX}"
