"""The JSON form of EntroQ's values, shared by the HTTP API and ``HTTPBackend``.

Values travel as base64, times as RFC 3339 in UTC with microseconds
(``2026-11-29T02:15:00.123456Z``), IDs as UUID strings. Decoders check every field
and raise ``ValueError`` naming it (``inserts[2].queue: ...``), so a server can answer
400 with a message a client can act on.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Mapping, Set
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import DependencyError
from .modify import Modification, TaskChange
from .tasks import (
    MAX_DURATION_SECONDS,
    QueueStat,
    Task,
    TaskData,
    TaskID,
    as_uuid,
    check_err,
    check_queue,
)

JSON = dict[str, Any]


# Scalars.


def encode_time(moment: datetime) -> str:
    # Not strftime: its %Y drops the leading zeros of years before 1000.
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def decode_time(raw: Any, name: str) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"{name}: expected an RFC 3339 time string, got {_kind(raw)}")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}: not an RFC 3339 time: {raw[:64]!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name}: the time needs a UTC offset or Z: {raw[:64]!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name}: out of range in UTC: {raw[:64]!r}") from None


def encode_value(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def decode_value(raw: Any, name: str) -> bytes:
    if not isinstance(raw, str):
        raise ValueError(f"{name}: expected base64 text, got {_kind(raw)}")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name}: not valid base64") from None


def decode_id(raw: Any, name: str) -> uuid.UUID:
    if not isinstance(raw, str):
        raise ValueError(f"{name}: expected a UUID string, got {_kind(raw)}")
    try:
        return as_uuid(raw, name)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _int(raw: Any, name: str, *, low: int = 0, high: int = 2**31 - 1) -> int:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # JSON does not tell 2 from 2.0
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise ValueError(f"{name}: expected an integer, got {_kind(raw)}")
    if not low <= raw <= high:
        raise ValueError(f"{name}: {raw} is outside {low}..{high}")
    return raw


def _number(raw: Any, name: str, *, high: float) -> float:
    if not isinstance(raw, int | float) or isinstance(raw, bool) or raw != raw:
        raise ValueError(f"{name}: expected a number of seconds, got {_kind(raw)}")
    if not 0 <= raw <= high:
        raise ValueError(f"{name}: {raw} is outside 0..{high:g}")
    return float(raw)


def _str(raw: Any, name: str) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{name}: expected a string, got {_kind(raw)}")
    return raw


def _checked[T](check: Callable[[Any], T], raw: Any, name: str) -> T:
    try:
        return check(raw)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: {error}") from None


def _kind(raw: Any) -> str:
    return "null" if raw is None else type(raw).__name__


def _object(raw: Any, name: str, allowed: Set[str], required: Set[str] = frozenset()) -> JSON:
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: expected an object, got {_kind(raw)}")
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{name}: unknown field {sorted(unknown)[0]!r}")
    missing = required - set(raw)
    if missing:
        raise ValueError(f"{name}: missing field {sorted(missing)[0]!r}")
    return raw


def _list(raw: Any, name: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{name}: expected a list, got {_kind(raw)}")
    return raw


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BOUND_PATTERN = r"^-?[0-9]{1,19}\.[0-9a-f]{32}$"


def encode_bound(at: datetime, id: uuid.UUID) -> str:
    """Return a keyset bound as text: ``<microseconds since 1970>.<hex ID>``."""
    return f"{(at - EPOCH) // timedelta(microseconds=1)}.{id.hex}"


def decode_bound(raw: str, name: str) -> tuple[datetime, uuid.UUID]:
    """Return the ``(at, id)`` bound that :func:`encode_bound` wrote.

    A time beyond what Python can hold is taken as the first or last one it can:
    as a bound it means the same.
    """
    if not re.fullmatch(BOUND_PATTERN, raw):
        raise ValueError(f"{name}: expected <microseconds since 1970>.<32 hex digits>")
    micros, hex_id = raw.split(".")
    try:
        at = EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        at = (datetime.min if micros.startswith("-") else datetime.max).replace(tzinfo=UTC)
    return at, uuid.UUID(hex=hex_id)


# Tasks and stats.


def encode_task(task: Task) -> JSON:
    return {
        "queue": task.queue,
        "id": str(task.id),
        "version": task.version,
        "at": encode_time(task.at),
        "claimant": None if task.claimant is None else str(task.claimant),
        "claims": task.claims,
        "value": encode_value(task.value),
        "created": encode_time(task.created),
        "modified": encode_time(task.modified),
        "attempt": task.attempt,
        "err": task.err,
    }


TASK_FIELDS = frozenset(
    {"queue", "id", "version", "at", "claimant", "claims", "value"}
    | {"created", "modified", "attempt", "err"}
)


def decode_task(raw: Any, name: str = "task", *, known_value: bytes | None = None) -> Task:
    """Return the task ``raw`` describes; ``known_value`` stands for a null value (a
    changed task whose change kept it: the client has it)."""
    data = _object(raw, name, TASK_FIELDS, TASK_FIELDS)
    claimant = data["claimant"]
    value = data["value"]
    return Task(
        queue=_str(data["queue"], f"{name}.queue"),
        id=decode_id(data["id"], f"{name}.id"),
        version=_int(data["version"], f"{name}.version"),
        at=decode_time(data["at"], f"{name}.at"),
        claimant=None if claimant is None else decode_id(claimant, f"{name}.claimant"),
        claims=_int(data["claims"], f"{name}.claims"),
        value=(
            known_value
            if value is None and known_value is not None
            else decode_value(value, f"{name}.value")
        ),
        created=decode_time(data["created"], f"{name}.created"),
        modified=decode_time(data["modified"], f"{name}.modified"),
        attempt=_int(data["attempt"], f"{name}.attempt"),
        err=_str(data["err"], f"{name}.err"),
    )


def encode_stat(stat: QueueStat) -> JSON:
    return {
        "size": stat.size,
        "available": stat.available,
        "claimed": stat.claimed,
        "future": stat.future,
        "max_claims": stat.max_claims,
        "earliest": None if stat.earliest is None else encode_time(stat.earliest),
    }


def decode_stat(name: str, raw: Any) -> QueueStat:
    where = f"stats[{name!r}]"
    fields = {"size", "available", "claimed", "future", "max_claims", "earliest"}
    data = _object(raw, where, fields, fields)
    earliest = data["earliest"]
    return QueueStat(
        name=name,
        size=_int(data["size"], f"{where}.size", high=2**63),
        available=_int(data["available"], f"{where}.available", high=2**63),
        claimed=_int(data["claimed"], f"{where}.claimed", high=2**63),
        future=_int(data["future"], f"{where}.future", high=2**63),
        max_claims=_int(data["max_claims"], f"{where}.max_claims"),
        earliest=None if earliest is None else decode_time(earliest, f"{where}.earliest"),
    )


# Modifications.


def encode_modification(mod: Modification) -> JSON:
    """Return the JSON of ``mod``; fields a change does not give are left out (kept)."""

    def optional(**fields: Any) -> JSON:
        return {name: value for name, value in fields.items() if value is not None}

    return {
        "inserts": [
            {
                "queue": d.queue,
                "value": encode_value(d.value),
                "attempt": d.attempt,
                "err": d.err,
                **optional(
                    at=None if d.at is None else encode_time(d.at),
                    arrival_in=d.arrival_in,
                    id=None if d.id is None else str(d.id),
                ),
            }
            for d in mod.inserts
        ],
        "changes": [
            {
                "id": str(c.id),
                "version": c.version,
                **optional(
                    queue=c.queue,
                    value=None if c.value is None else encode_value(c.value),
                    at=None if c.at is None else encode_time(c.at),
                    arrival_in=c.arrival_in,
                    attempt=c.attempt,
                    err=c.err,
                ),
            }
            for c in mod.changes
        ],
        "deletes": [encode_task_id(d) for d in mod.deletes],
        "depends": [encode_task_id(d) for d in mod.depends],
    }


INSERT_FIELDS = frozenset({"queue", "value", "at", "arrival_in", "id", "attempt", "err"})
CHANGE_FIELDS = frozenset({"id", "version", "queue", "value", "at", "arrival_in", "attempt", "err"})


def decode_modification(raw: Any, claimant: uuid.UUID | None) -> Modification:
    """Return the modification a request describes, made by ``claimant``.

    An insert arrives at ``at``, or ``arrival_in`` seconds after the store's clock, or
    now. A change keeps every field it omits (or sends as null), except when the task
    arrives: at ``at``, after ``arrival_in``, or now (which releases it).
    """
    body = _object(raw, "body", {"inserts", "changes", "deletes", "depends"})
    mod = Modification(claimant=claimant)
    for i, item in enumerate(_list(body.get("inserts"), "inserts")):
        name = f"inserts[{i}]"
        data = _object(item, name, INSERT_FIELDS, {"queue"})
        at, arrival_in = _arrival(data, name)
        id = data.get("id")
        mod.inserts.append(
            TaskData(
                queue=_checked(check_queue, data["queue"], f"{name}.queue"),
                value=decode_value(data.get("value", ""), f"{name}.value"),
                at=at,
                arrival_in=arrival_in,
                id=None if id is None else decode_id(id, f"{name}.id"),
                attempt=_int(data.get("attempt", 0), f"{name}.attempt"),
                err=_checked(check_err, data.get("err", ""), f"{name}.err"),
            )
        )
    for i, item in enumerate(_list(body.get("changes"), "changes")):
        name = f"changes[{i}]"
        data = _object(item, name, CHANGE_FIELDS, {"id", "version"})
        at, arrival_in = _arrival(data, name)
        queue, value = data.get("queue"), data.get("value")
        attempt, err = data.get("attempt"), data.get("err")
        mod.changes.append(
            TaskChange(
                id=decode_id(data["id"], f"{name}.id"),
                version=_int(data["version"], f"{name}.version"),
                queue=None if queue is None else _checked(check_queue, queue, f"{name}.queue"),
                value=None if value is None else decode_value(value, f"{name}.value"),
                # The client has the value a change keeps: it is answered as null.
                known_value=b"" if value is None else None,
                at=at,
                arrival_in=arrival_in,
                attempt=None if attempt is None else _int(attempt, f"{name}.attempt"),
                err=None if err is None else _checked(check_err, err, f"{name}.err"),
            )
        )
    for label in ("deletes", "depends"):
        target = mod.deletes if label == "deletes" else mod.depends
        for i, item in enumerate(_list(body.get(label), label)):
            target.append(decode_task_id(item, f"{label}[{i}]"))
    return mod


def _arrival(data: JSON, name: str) -> tuple[datetime | None, float | None]:
    """Return the ``at`` and ``arrival_in`` of an insert or change; at most one is given."""
    at, arrival_in = data.get("at"), data.get("arrival_in")
    if at is not None and arrival_in is not None:
        raise ValueError(f"{name}: give at or arrival_in, not both")
    return (
        None if at is None else decode_time(at, f"{name}.at"),
        None
        if arrival_in is None
        else _number(arrival_in, f"{name}.arrival_in", high=MAX_DURATION_SECONDS),
    )


def encode_task_id(task_id: TaskID) -> JSON:
    return {"id": str(task_id.id), "version": task_id.version}


def decode_task_id(raw: Any, name: str) -> TaskID:
    data = _object(raw, name, {"id", "version"}, {"id", "version"})
    return TaskID(decode_id(data["id"], f"{name}.id"), _int(data["version"], f"{name}.version"))


DEPENDENCY_FIELDS = ("inserts", "depends", "deletes", "changes", "claims")


def encode_dependency_error(error: DependencyError) -> JSON:
    body: JSON = {"error": "dependency", "message": str(error)}
    for label in DEPENDENCY_FIELDS:
        body[label] = [encode_task_id(t) for t in getattr(error, label)]
    return body


def decode_dependency_error(raw: Mapping[str, Any]) -> DependencyError:
    def ids(label: str) -> list[TaskID]:
        return [decode_task_id(t, f"{label}[{i}]") for i, t in enumerate(raw.get(label) or [])]

    return DependencyError(
        inserts=ids("inserts"),
        depends=ids("depends"),
        deletes=ids("deletes"),
        changes=ids("changes"),
        claims=ids("claims"),
    )


# Query parameters (numbers and flags arrive as text).


def param_int(raw: str | None, name: str, default: int, *, high: int = 2**31 - 1) -> int:
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw[:32]!r}") from None
    return _int(number, name, high=high)


def param_flag(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"{name}: expected true or false, got {raw[:32]!r}")


def param_number(raw: Any, name: str, default: float, *, high: float) -> float:
    if raw is None:
        return default
    return _number(raw, name, high=high)
