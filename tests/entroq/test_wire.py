"""The JSON form of tasks, times and keyset bounds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from queues.entroq import Task, wire


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(23, 2, 8, 20, 13, 36, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),
        datetime(2026, 11, 29, 2, 15, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_times_and_bounds_round_trip_at_every_date(moment: datetime) -> None:
    text = wire.encode_time(moment)
    assert len(text) == len("2026-11-29T02:15:00.000000Z")
    assert wire.decode_time(text, "t") == moment
    id = uuid.uuid4()
    assert wire.decode_bound(wire.encode_bound(moment, id), "b") == (moment, id)


def test_bounds_beyond_the_calendar_are_its_ends() -> None:
    zero = "0" * 32
    assert wire.decode_bound(f"-9999999999999999999.{zero}", "b")[0].year == 1
    assert wire.decode_bound(f"9999999999999999999.{zero}", "b")[0].year == 9999
    with pytest.raises(ValueError, match="b: expected"):
        wire.decode_bound("12.xyz", "b")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("yesterday", "not an RFC 3339 time"),
        ("2026-01-01T00:00:00", "the time needs a UTC offset"),
        ("0001-01-01T00:00:00+05:00", "out of range in UTC"),
        (5, "expected an RFC 3339 time string"),
    ],
)
def test_bad_times_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"at: {message}"):
        wire.decode_time(raw, "at")


def test_integers_may_be_written_as_whole_floats_only() -> None:
    body = {"deletes": [{"id": str(uuid.uuid4()), "version": 3.0}]}
    assert wire.decode_modification(body, None).deletes[0].version == 3
    body["deletes"][0]["version"] = 3.5
    with pytest.raises(ValueError, match=r"deletes\[0\].version: expected an integer"):
        wire.decode_modification(body, None)


def test_a_task_round_trips() -> None:
    now = datetime.now(UTC)
    task = Task(
        queue="q",
        id=uuid.uuid4(),
        version=2,
        at=now + timedelta(seconds=30),
        claimant=None,
        claims=1,
        value=b"\x00\xff",
        created=now,
        modified=now,
        attempt=1,
        err="e",
    )
    assert wire.decode_task(wire.encode_task(task)) == task
