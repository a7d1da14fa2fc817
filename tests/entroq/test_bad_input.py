"""Bad input gets a clear exception before anything is stored, on every backend."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from pytest_django.fixtures import Settings

from queues import entroq
from queues.entroq import EntroQ
from tests.conftest import http_backend


def assert_store_untouched(eq: EntroQ) -> None:
    assert eq.queues() == {}


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ("", "must not be empty"),
        ("q" * (entroq.MAX_QUEUE_LENGTH + 1), "limit is 500"),
        ("nul\x00byte", "NUL"),
    ],
)
def test_bad_queue_names_are_refused(eq: EntroQ, queue: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        eq.modify(entroq.inserting_into("fine"), entroq.inserting_into(queue))
    with pytest.raises(ValueError, match=message):
        eq.try_claim(queue)
    with pytest.raises(ValueError, match="queue"):
        eq.tasks(queue)
    assert_store_untouched(eq)


def test_the_longest_queue_name_is_accepted(eq: EntroQ) -> None:
    queue = "é" * entroq.MAX_QUEUE_LENGTH
    eq.modify(entroq.inserting_into(queue))
    assert eq.queues() == {queue: 1}
    assert eq.try_claim(queue) is not None


def test_a_value_over_the_default_limit_is_refused(eq: EntroQ) -> None:
    assert eq.backend.max_value_bytes == entroq.DEFAULT_MAX_VALUE_BYTES == 10 * 1024 * 1024
    too_big = b"x" * (entroq.DEFAULT_MAX_VALUE_BYTES + 1)

    with pytest.raises(ValueError, match=r"limit of 10485760 bytes"):
        eq.modify(entroq.inserting_into("fine"), entroq.inserting_into("q", value=too_big))
    assert_store_untouched(eq)


def test_a_value_at_the_limit_is_stored_intact(eq: EntroQ) -> None:
    value = bytes(range(256)) * 4096  # 1 MiB of every byte value
    [task], _ = eq.modify(entroq.inserting_into("q", value=value))
    assert eq.tasks("q")[0].value == value == task.value


def test_a_changed_value_over_the_limit_is_refused(eq: EntroQ) -> None:
    if isinstance(eq.backend, entroq.HTTPBackend):
        backend = http_backend(eq.backend.base_url)
        backend.max_value_bytes = 10
    else:
        backend = type(eq.backend)(max_value_bytes=10)  # type: ignore[call-arg]
    small = EntroQ(backend)
    [task], _ = small.modify(entroq.inserting_into("q", value=b"0123456789"))

    with pytest.raises(ValueError, match="limit of 10 bytes"):
        small.modify(task.as_change(value=b"01234567890"))
    assert small.tasks("q") == [task]


@pytest.mark.django_db
def test_the_django_value_limit_is_a_setting(settings: Settings) -> None:
    settings.ENTROQ = {"MAX_VALUE_BYTES": 4}
    eq = EntroQ(entroq.DjangoBackend())

    with pytest.raises(ValueError, match="limit of 4 bytes"):
        eq.modify(entroq.inserting_into("q", value=b"12345"))


def test_naive_datetimes_are_refused(eq: EntroQ) -> None:
    naive = datetime(2030, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        eq.modify(entroq.inserting_into("q", at=naive))
    [task], _ = eq.modify(entroq.inserting_into("q"))
    with pytest.raises(ValueError, match="timezone-aware"):
        eq.modify(task.as_change(at=naive))
    with pytest.raises(ValueError, match="timezone-aware"):
        entroq.TaskData(queue="q", at=naive)
    assert eq.tasks("q") == [task]


@pytest.mark.parametrize("duration", [-1, -0.5, timedelta(seconds=-3)])
def test_negative_durations_are_refused(eq: EntroQ, duration: float | timedelta) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        eq.try_claim("q", duration=duration)
    with pytest.raises(ValueError, match="must not be negative"):
        eq.claim("q", timeout=duration)
    with pytest.raises(ValueError, match="must not be negative"):
        eq.modify(entroq.inserting_into("q", arrival_in=duration))
    [task], _ = eq.modify(entroq.inserting_into("q"))
    with pytest.raises(ValueError, match="must not be negative"):
        eq.renew_for(task, duration)
    assert eq.tasks("q") == [task]


@pytest.mark.parametrize(
    ("duration", "message"),
    [(float("inf"), "over the limit"), (1e12, "over the limit"), (float("nan"), "NaN")],
)
def test_endless_durations_are_refused(eq: EntroQ, duration: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        eq.try_claim("q", duration=duration)
    with pytest.raises(ValueError, match=message):
        eq.claim("q", poll_time=duration, timeout=0)
    with pytest.raises(ValueError, match=message):
        eq.modify(entroq.inserting_into("q", arrival_in=duration))
    assert_store_untouched(eq)


def test_the_nil_uuid_is_refused(eq: EntroQ) -> None:
    nil = uuid.UUID(int=0)
    with pytest.raises(ValueError, match="nil UUID"):
        eq.modify(entroq.inserting_into("q", id=nil))
    with pytest.raises(ValueError, match="nil UUID"):
        eq.modify(entroq.deleting(nil, 0))
    with pytest.raises(ValueError, match="nil UUID"):
        EntroQ(eq.backend, claimant_id=nil)
    assert_store_untouched(eq)


@pytest.mark.parametrize(
    "text",
    [b"", b"[]", b'{"task": []}', b'{"task": {"id": 5}}', b'{"task": {"value": "%%%"}}', b"\xff"],
)
def test_a_malformed_error_task_value_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError, match="not an ErrorTaskValue"):
        entroq.ErrorTaskValue.from_json(text)


def test_durations_of_the_wrong_type_are_refused(eq: EntroQ) -> None:
    with pytest.raises(TypeError, match="seconds or a timedelta"):
        eq.try_claim("q", duration="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll_time must be positive"):
        eq.claim("q", poll_time=0)


def test_ids_that_are_not_uuids_are_refused(eq: EntroQ) -> None:
    with pytest.raises(ValueError, match="not a UUID: 'task-1'"):
        eq.modify(entroq.deleting("task-1", 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a UUID"):
        eq.modify(entroq.inserting_into("q", id="nope"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a UUID"):
        eq.modify(entroq.depending_on(42, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a UUID"):
        eq.tasks(ids=["nope"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a UUID"):
        EntroQ(eq.backend, claimant_id="me")  # type: ignore[arg-type]
    assert_store_untouched(eq)


def test_uuid_strings_are_accepted(eq: EntroQ) -> None:
    task_id = uuid.uuid4()
    eq.modify(entroq.inserting_into("q", id=str(task_id)))  # type: ignore[arg-type]
    [task] = eq.tasks(ids=[str(task_id)])  # type: ignore[list-item]
    eq.modify(entroq.deleting(str(task.id), task.version))  # type: ignore[arg-type]
    assert eq.tasks("q") == []


def test_bad_versions_are_refused(eq: EntroQ) -> None:
    with pytest.raises(ValueError, match="version"):
        eq.modify(entroq.deleting(uuid.uuid4(), -1))
    with pytest.raises(ValueError, match="version"):
        eq.modify(entroq.depending_on(uuid.uuid4(), "1"))  # type: ignore[arg-type]


def test_the_same_id_twice_in_one_modification_is_refused(eq: EntroQ) -> None:
    [task], _ = eq.modify(entroq.inserting_into("q"))
    twice = [
        (task.as_deletion(), task.as_deletion()),
        (task.as_change(value=b"x"), task.as_deletion()),
        (task.as_dependency(), task.as_change(value=b"x")),
        (entroq.inserting_into("q", id=task.id), task.as_deletion()),
    ]
    fresh = uuid.uuid4()
    twice.append((entroq.inserting_into("a", id=fresh), entroq.inserting_into("b", id=fresh)))
    for args in twice:
        with pytest.raises(ValueError, match="more than once"):
            eq.modify(entroq.inserting_into("untouched"), *args)
    assert eq.queues() == {"q": 1}
    assert eq.tasks("q") == [task]


def test_values_must_be_bytes(eq: EntroQ) -> None:
    with pytest.raises(TypeError, match="encode text first"):
        eq.modify(entroq.inserting_into("q", value="text"))  # type: ignore[arg-type]
    [task], _ = eq.modify(entroq.inserting_into("q", value=bytearray(b"ok")))  # type: ignore[arg-type]
    assert task.value == b"ok"
    assert isinstance(task.value, bytes)


def test_err_and_attempt_are_checked(eq: EntroQ) -> None:
    with pytest.raises(ValueError, match="err is 65537 characters long"):
        eq.modify(entroq.inserting_into("q", err="e" * 65537))
    with pytest.raises(ValueError, match="attempt"):
        eq.modify(entroq.inserting_into("q", attempt=-1))
    with pytest.raises(ValueError, match="NUL"):
        eq.modify(entroq.inserting_into("q", err="a\x00b"))
    assert_store_untouched(eq)


def test_modify_takes_only_modify_arguments(eq: EntroQ) -> None:
    with pytest.raises(TypeError, match="modify arguments"):
        eq.modify("not an argument")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TaskData"):
        entroq.inserting("q")  # type: ignore[arg-type]


def test_at_and_arrival_in_exclude_each_other(eq: EntroQ) -> None:
    now = eq.time()
    with pytest.raises(ValueError, match="not both"):
        entroq.inserting_into("q", at=now, arrival_in=1)


def test_claims_and_listings_need_sane_arguments(eq: EntroQ) -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        eq.try_claim()
    with pytest.raises(ValueError, match="limit"):
        eq.tasks("q", limit=-1)
    with pytest.raises(ValueError, match="limit"):
        eq.queues(limit=-1)
    with pytest.raises(TypeError, match="match_prefix takes strings"):
        eq.queues(match_prefix=[1])  # type: ignore[list-item]
