"""DependencyError and ErrorTaskValue, the error queue's value in Go's JSON."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from queues import entroq

MOMENT = datetime(2026, 11, 28, 23, 34, 17, 123456, tzinfo=UTC)


def make_task(claimant: uuid.UUID | None) -> entroq.Task:
    return entroq.Task(
        queue="inbox",
        id=uuid.UUID("7b0f6a1e-8f61-4f2c-9d51-0a3c2b1e4d5f"),
        version=3,
        at=MOMENT,
        claimant=claimant,
        claims=2,
        value=b"\x00payload\xff",
        created=MOMENT,
        modified=MOMENT,
        attempt=1,
        err="earlier",
    )


def test_error_task_value_is_go_json() -> None:
    claimant = uuid.uuid4()
    data = json.loads(entroq.ErrorTaskValue(make_task(claimant), "boom").to_json())

    assert data == {
        "task": {
            "queue": "inbox",
            "id": "7b0f6a1e-8f61-4f2c-9d51-0a3c2b1e4d5f",
            "version": 3,
            "at": "2026-11-28T23:34:17.123456Z",
            "claimant": str(claimant),
            "claims": 2,
            "value": "AHBheWxvYWT/",
            "created": "2026-11-28T23:34:17.123456Z",
            "modified": "2026-11-28T23:34:17.123456Z",
            "attempt": 1,
            "err": "earlier",
        },
        "err": "boom",
    }


def test_error_task_value_round_trips() -> None:
    for claimant in (None, uuid.uuid4()):
        value = entroq.ErrorTaskValue(make_task(claimant), "boom")
        assert entroq.ErrorTaskValue.from_json(value.to_json()) == value


def test_error_task_value_reads_what_go_writes() -> None:
    # Go: nanoseconds, an offset instead of Z, the nil UUID for "no claimant", and no
    # attempt or err fields in older versions.
    go = (
        b'{"task": {"queue": "q", "id": "7b0f6a1e-8f61-4f2c-9d51-0a3c2b1e4d5f", "version": 1,'
        b' "at": "2026-11-28T23:34:17.123456789+01:00",'
        b' "claimant": "00000000-0000-0000-0000-000000000000", "claims": 0,'
        b' "value": "aGk=", "created": "2026-11-28T22:34:17Z",'
        b' "modified": "2026-11-28T22:34:17.5Z"}, "err": "bad input"}'
    )
    value = entroq.ErrorTaskValue.from_json(go)

    assert value.err == "bad input"
    assert value.task.claimant is None
    assert value.task.value == b"hi"
    assert value.task.at == datetime(2026, 11, 28, 22, 34, 17, 123456, tzinfo=UTC)
    assert value.task.modified == datetime(2026, 11, 28, 22, 34, 17, 500000, tzinfo=UTC)
    assert (value.task.attempt, value.task.err) == (0, "")


def test_dependency_error_says_what_is_wrong() -> None:
    task_id = entroq.TaskID(uuid.uuid4(), 4)
    error = entroq.DependencyError(deletes=[task_id], claims=[task_id], message="modify failed")

    assert error.has_missing()
    assert error.has_claims()
    assert not error.has_collisions()
    assert str(error) == (
        f"modify failed; missing or stale deletes: {task_id}; held by another claimant: {task_id}"
    )
    assert entroq.default_err_qmap("inbox") == "inbox/err"


def test_an_error_value_nested_too_deeply_is_no_error_value() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        entroq.ErrorTaskValue.from_json(b"[" * 100_000 + b"]" * 100_000)
