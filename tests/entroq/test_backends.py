"""EntroQ's semantics, the same on every backend (``backend`` fixture: memory, Django)."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from queues import entroq
from queues.entroq import EntroQ


def insert(eq: EntroQ, queue: str = "q", **kwargs: object) -> entroq.Task:
    inserted, _ = eq.modify(entroq.inserting_into(queue, **kwargs))  # type: ignore[arg-type]
    return inserted[0]


def unbound(eq: EntroQ) -> entroq.Backend:
    """Return where to make a modification without a claimant: over HTTP each one is
    the token's, so go to the database behind the server."""
    if isinstance(eq.backend, entroq.HTTPBackend):
        return entroq.DjangoBackend()
    return eq.backend


def test_insert_sets_the_fields_of_the_contract(eq: EntroQ) -> None:
    before = eq.time()
    task = insert(eq, "jobs", value=b"payload", attempt=2, err="earlier failure")
    after = eq.time()

    assert task.queue == "jobs"
    assert task.value == b"payload"
    assert (task.version, task.claims) == (0, 0)
    assert task.claimant == eq.id
    assert before <= task.created == task.modified == task.at <= after
    assert (task.attempt, task.err) == (2, "earlier failure")
    assert eq.tasks("jobs") == [task]


def test_claim_takes_an_available_task_and_leases_it(eq: EntroQ) -> None:
    task = insert(eq, value=b"v")
    before = eq.time()

    claimed = eq.try_claim("q", duration=60)

    assert claimed is not None
    assert claimed.id == task.id
    assert claimed.version == task.version + 1
    assert claimed.claims == 1
    assert claimed.claimant == eq.id
    assert claimed.value == b"v"
    assert before + timedelta(seconds=59) < claimed.at <= eq.time() + timedelta(seconds=60)
    assert claimed.modified >= before
    assert eq.try_claim("q") is None, "a claimed task is not available"


def test_a_future_task_is_claimable_only_once_due(eq: EntroQ) -> None:
    task = insert(eq, arrival_in=1.5)

    assert eq.try_claim("q") is None
    time.sleep(1.6)
    claimed = eq.try_claim("q")

    assert claimed is not None
    assert claimed.id == task.id


def test_change_releases_the_claim_and_keeps_the_id(eq: EntroQ) -> None:
    insert(eq, "a", value=b"one")
    claimed = eq.try_claim("a", duration=60)
    assert claimed is not None

    _, [changed] = eq.modify(claimed.as_change(queue="b", value=b"two"))

    assert changed.id == claimed.id
    assert changed.version == claimed.version + 1
    assert (changed.queue, changed.value) == ("b", b"two")
    assert changed.claimant is None
    assert changed.claims == claimed.claims
    assert changed.at <= eq.time()
    assert eq.tasks("a") == []
    assert eq.tasks("b") == [changed]


def test_change_into_the_future_keeps_the_claim(eq: EntroQ, other: EntroQ) -> None:
    task = insert(eq)

    _, [delayed] = eq.modify(task.as_change(arrival_in=60))

    assert delayed.claimant == eq.id
    assert delayed.at > eq.time() + timedelta(seconds=59)
    with pytest.raises(entroq.DependencyError) as caught:
        other.modify(delayed.as_deletion())
    assert caught.value.claims == [delayed.id_version()]


def test_change_keeps_fields_not_given(eq: EntroQ) -> None:
    task = insert(eq, value=b"keep", attempt=3, err="why")

    _, [changed] = eq.modify(entroq.changing(task, err="new"))

    assert (changed.queue, changed.value, changed.attempt, changed.err) == ("q", b"keep", 3, "new")


def test_listing_with_and_without_values(eq: EntroQ) -> None:
    first = insert(eq, value=b"1")
    second = insert(eq, value=b"2", arrival_in=5)

    assert [t.id for t in eq.tasks("q")] == [first.id, second.id], "ordered by at"
    assert [t.value for t in eq.tasks("q")] == [b"1", b"2"]
    without = eq.tasks("q", omit_values=True)
    assert [t.value for t in without] == [b"", b""]
    assert [t.id_version() for t in without] == [first.id_version(), second.id_version()]
    assert len(eq.tasks("q", limit=1)) == 1
    assert eq.tasks("nothing-here") == []


def test_listing_by_id_in_request_order_across_queues(eq: EntroQ) -> None:
    a = insert(eq, "a")
    b = insert(eq, "b")
    c = insert(eq, "c")

    found = eq.tasks(ids=[c.id, a.id, uuid.uuid4(), b.id, c.id])

    assert [t.id for t in found] == [c.id, a.id, b.id], "once each, in request order"
    assert [t.id for t in eq.tasks("a", ids=[c.id, a.id])] == [a.id]


def test_listing_limited_to_a_claimant(eq: EntroQ, other: EntroQ) -> None:
    mine = insert(eq, "q")
    theirs = insert(eq, "q")
    # An insert into the future is held by its inserter until it arrives.
    scheduled = insert(eq, "q", arrival_in=60)
    claimed_by_me = eq.modify(mine.as_change(arrival_in=60))[1][0]
    claimed_by_them = other.modify(entroq.changing(theirs, arrival_in=60))[1][0]
    available = insert(eq, "q")

    assert {t.id for t in eq.tasks("q", claimant=eq.id)} == {
        claimed_by_me.id,
        scheduled.id,
        available.id,
    }
    assert {t.id for t in eq.tasks("q", claimant=other.id)} == {claimed_by_them.id, available.id}


def test_tasks_needs_a_queue_or_ids(eq: EntroQ) -> None:
    with pytest.raises(ValueError, match="queue"):
        eq.tasks()


def test_explicit_ids_and_collisions_across_queues(eq: EntroQ) -> None:
    task_id = uuid.uuid4()
    task = insert(eq, "a", id=task_id)
    assert task.id == task_id

    with pytest.raises(entroq.DependencyError) as caught:
        eq.modify(entroq.inserting_into("b", id=task_id), entroq.inserting_into("b"))

    assert caught.value.has_collisions()
    assert [i.id for i in caught.value.inserts] == [task_id]
    assert eq.tasks("b") == [], "nothing of a failed modification is applied"


def test_skip_colliding_drops_only_the_colliding_inserts(eq: EntroQ) -> None:
    existing = insert(eq, "a", id=uuid.uuid4())
    fresh_id = uuid.uuid4()

    inserted, _ = eq.modify(
        entroq.inserting_into("a", id=existing.id, skip_colliding=True),
        entroq.inserting_into("a", id=fresh_id, skip_colliding=True),
    )

    assert [t.id for t in inserted] == [fresh_id]
    assert {t.id for t in eq.tasks("a")} == {existing.id, fresh_id}


def test_skip_colliding_does_not_hide_other_problems(eq: EntroQ) -> None:
    existing = insert(eq, "a", id=uuid.uuid4())

    with pytest.raises(entroq.DependencyError) as caught:
        eq.modify(
            entroq.inserting_into("a", id=existing.id, skip_colliding=True),
            entroq.deleting(uuid.uuid4(), 0),
        )

    assert caught.value.has_missing()


def test_missing_and_stale_deletes(eq: EntroQ) -> None:
    task = insert(eq)
    missing = entroq.TaskID(uuid.uuid4(), 0)
    stale = entroq.TaskID(task.id, task.version + 1)

    with pytest.raises(entroq.DependencyError) as caught:
        eq.modify(missing.as_deletion(), stale.as_deletion())

    assert caught.value.deletes == [missing, stale]
    assert caught.value.has_missing()
    assert not caught.value.has_claims()
    assert eq.tasks("q") == [task]

    eq.modify(task.as_deletion())
    assert eq.tasks("q") == []


def test_modify_is_all_or_nothing(eq: EntroQ) -> None:
    keep = insert(eq, "a", value=b"keep")
    change = insert(eq, "a", value=b"before")

    with pytest.raises(entroq.DependencyError):
        eq.modify(
            entroq.inserting_into("b", value=b"new"),
            keep.as_deletion(),
            change.as_change(value=b"after"),
            entroq.depending_on(uuid.uuid4(), 0),
        )

    assert eq.tasks("b") == []
    assert sorted(t.value for t in eq.tasks("a")) == [b"before", b"keep"]
    assert {t.version for t in eq.tasks("a")} == {0}


def test_every_problem_is_reported_at_once(eq: EntroQ, other: EntroQ) -> None:
    held = insert(eq, "q")
    held = eq.modify(held.as_change(arrival_in=60))[1][0]
    present = insert(eq, "q", id=uuid.uuid4())
    depend = entroq.TaskID(uuid.uuid4(), 1)
    delete = entroq.TaskID(uuid.uuid4(), 2)
    change_of = insert(eq, "q")

    with pytest.raises(entroq.DependencyError) as caught:
        other.modify(
            entroq.inserting_into("q", id=present.id),
            depend.as_dependency(),
            delete.as_deletion(),
            entroq.changing(dataclasses.replace(change_of, version=7), value=b"x"),
            held.as_deletion(),
        )

    error = caught.value
    assert error.inserts == [entroq.TaskID(present.id, 0)]
    assert error.depends == [depend]
    assert error.deletes == [delete]
    assert error.changes == [entroq.TaskID(change_of.id, 7)]
    assert error.claims == [held.id_version()]
    assert error.has_missing()
    assert error.has_claims()
    assert error.has_collisions()
    assert str(present.id) in str(error)
    assert str(held.id) in str(error)


def test_a_dependency_pins_a_version(eq: EntroQ) -> None:
    config = insert(eq, "config")
    inserted, _ = eq.modify(config.as_dependency(), entroq.inserting_into("work"))
    assert len(inserted) == 1
    assert eq.tasks("config") == [config], "a dependency changes nothing"

    eq.modify(config.as_change(value=b"new"))
    with pytest.raises(entroq.DependencyError) as caught:
        eq.modify(config.as_dependency(), entroq.inserting_into("work"))
    assert caught.value.depends == [config.id_version()]


def test_claims_protect_a_held_task_from_other_claimants(eq: EntroQ, other: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=60)
    assert claimed is not None

    assert other.try_claim("q") is None
    with pytest.raises(entroq.DependencyError) as deleting:
        other.modify(claimed.as_deletion())
    with pytest.raises(entroq.DependencyError) as changing:
        other.modify(claimed.as_change(value=b"mine now"))
    assert deleting.value.claims == [claimed.id_version()]
    assert changing.value.claims == [claimed.id_version()]
    assert not deleting.value.has_missing()

    eq.modify(claimed.as_deletion())
    assert eq.tasks("q") == []


def test_depending_on_a_held_task_is_allowed(eq: EntroQ, other: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=60)
    assert claimed is not None

    inserted, _ = other.modify(claimed.as_dependency(), entroq.inserting_into("next"))

    assert len(inserted) == 1


def test_expired_claims_are_claimable_by_others(eq: EntroQ, other: EntroQ) -> None:
    insert(eq)
    first = eq.try_claim("q", duration=1.5)
    assert first is not None
    assert other.try_claim("q") is None

    time.sleep(1.6)
    second = other.try_claim("q", duration=60)

    assert second is not None
    assert second.id == first.id
    assert second.claimant == other.id
    assert second.claims == 2
    with pytest.raises(entroq.DependencyError) as caught:
        eq.modify(first.as_deletion())
    assert caught.value.deletes == [first.id_version()], "the old version is stale"


def test_an_expired_claim_can_be_finished_by_anyone(eq: EntroQ, other: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=0.2)
    assert claimed is not None
    time.sleep(0.3)

    other.modify(claimed.as_deletion())

    assert eq.tasks("q") == []


def test_blocking_claim_is_woken_by_an_insert(eq: EntroQ, other: EntroQ) -> None:
    results: list[entroq.Task] = []
    ready = threading.Event()

    def wait_for_task() -> None:
        ready.set()
        try:
            results.append(other.claim("q", poll_time=30, timeout=10))
        finally:
            other.backend.release_thread()

    waiter = threading.Thread(target=wait_for_task)
    waiter.start()
    ready.wait()
    time.sleep(0.3)  # let the waiter find the queue empty and sleep
    inserted_at = time.monotonic()
    task = insert(eq)
    waiter.join(10)
    woke_after = time.monotonic() - inserted_at

    assert [t.id for t in results] == [task.id]
    # Well under the one-second polling of SQLite: only a notification is this quick.
    assert woke_after < 0.5, f"woke {woke_after:.2f} s after the insert"


def test_blocking_claim_wakes_when_a_future_task_comes_due(eq: EntroQ) -> None:
    task = insert(eq, arrival_in=0.5)
    started = time.monotonic()

    claimed = eq.claim("q", poll_time=30, timeout=10)

    assert claimed.id == task.id
    assert time.monotonic() - started < 1.5


def test_blocking_claim_polls_when_no_notification_comes() -> None:
    class Unnotified(entroq.MemoryBackend):
        """A store whose waiters are never woken: only polling finds new tasks."""

        subscribe = entroq.Backend.subscribe

    backend = Unnotified()
    inserter = threading.Timer(0.3, lambda: EntroQ(backend).modify(entroq.inserting_into("q")))
    inserter.start()
    started = time.monotonic()

    task = EntroQ(backend).claim("q", poll_time=0.5, timeout=10)

    assert task.queue == "q"
    assert 0.4 < time.monotonic() - started < 3, "found by the poll after the insert"


def test_claim_times_out(eq: EntroQ) -> None:
    started = time.monotonic()
    with pytest.raises(entroq.ClaimTimeout):
        eq.claim("empty", timeout=0.3, poll_time=0.1)
    assert isinstance(entroq.ClaimTimeout(), TimeoutError)
    assert 0.25 < time.monotonic() - started < 3


def test_claim_from_several_queues_is_fair(eq: EntroQ) -> None:
    # Ten times the tasks in "big": a pick among tasks would take "small" one time
    # in eleven; a fair pick among queues takes it half the time.
    eq.modify(*(entroq.inserting_into("big") for _ in range(400)))
    eq.modify(*(entroq.inserting_into("small") for _ in range(40)))

    picks: Counter[str] = Counter()
    for _ in range(40):
        task = eq.try_claim("big", "small", "empty", duration=60)
        assert task is not None
        picks[task.queue] += 1

    assert picks["small"] >= 10, picks


def test_claim_is_not_strictly_first_in_first_out(eq: EntroQ) -> None:
    base = eq.time() - timedelta(minutes=5)
    eq.modify(*(entroq.inserting_into("q", at=base + timedelta(seconds=i)) for i in range(8)))

    claimed_ids = set()
    for _ in range(30):
        task = eq.try_claim("q", duration=60)
        assert task is not None
        claimed_ids.add(task.id)
        eq.modify(task.as_change(at=base))  # back to the head of the queue

    assert len(claimed_ids) > 1, "a poison task at the head must not block the queue"


def test_concurrent_claims_never_return_the_same_task(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("q") for _ in range(200)))
    claimed: list[entroq.TaskID] = []
    lock = threading.Lock()

    def claim_all() -> None:
        try:
            client = EntroQ(eq.backend)
            while (task := client.try_claim("q", duration=60)) is not None:
                with lock:
                    claimed.append(task.id_version())
        finally:
            eq.backend.release_thread()

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(claimed) == 200
    assert len({c.id for c in claimed}) == 200


def test_a_batched_claim_leases_each_task_on_its_own(eq: EntroQ) -> None:
    before = eq.time()
    inserted = [insert(eq) for _ in range(3)]

    claimed = eq.try_claim_many("q", limit=5, duration=60)

    assert sorted(t.id for t in claimed) == sorted(t.id for t in inserted)
    by_id = {t.id: t for t in inserted}
    for task in claimed:
        assert task.version == by_id[task.id].version + 1
        assert (task.claimant, task.claims) == (eq.id, 1)
        assert task.at >= before + timedelta(seconds=59)
    assert eq.try_claim_many("q", limit=5) == []
    # Each lease is its own: one task finished, another released, the third still held.
    eq.modify(claimed[0].as_deletion(), claimed[1].as_change(at=eq.time()))
    assert [t.id for t in eq.try_claim_many("q", limit=5)] == [claimed[1].id]


def test_a_batched_claim_takes_turns_across_queues(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("big") for _ in range(40)))
    eq.modify(*(entroq.inserting_into("small") for _ in range(4)))

    claimed = eq.try_claim_many("big", "small", "empty", limit=6, duration=60)

    assert Counter(t.queue for t in claimed) == {"big": 3, "small": 3}


def test_a_batched_claim_takes_no_more_than_its_limit_and_refuses_bad_limits(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("q") for _ in range(10)))
    assert len(eq.try_claim_many("q", limit=4)) == 4
    for bad in (0, -1, 1001, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            eq.try_claim_many("q", limit=bad)  # type: ignore[arg-type]


def test_concurrent_batched_claims_never_return_the_same_task(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into(f"q{i % 3}") for i in range(300)))
    claimed: list[entroq.TaskID] = []
    lock = threading.Lock()

    def claim_all() -> None:
        try:
            client = EntroQ(eq.backend)
            while tasks := client.try_claim_many("q0", "q1", "q2", limit=7, duration=60):
                with lock:
                    claimed.extend(t.id_version() for t in tasks)
        finally:
            eq.backend.release_thread()

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(claimed) == 300
    assert len({c.id for c in claimed}) == 300


def test_a_blocking_batched_claim_is_woken_by_an_insert(eq: EntroQ, other: EntroQ) -> None:
    results: list[list[entroq.Task]] = []
    ready = threading.Event()

    def wait_for_tasks() -> None:
        ready.set()
        try:
            results.append(other.claim_many("q", limit=5, poll_time=30, timeout=10))
        finally:
            other.backend.release_thread()

    waiter = threading.Thread(target=wait_for_tasks)
    waiter.start()
    ready.wait()
    time.sleep(0.3)
    inserted, _ = eq.modify(*(entroq.inserting_into("q") for _ in range(3)))
    waiter.join(10)

    assert len(results) == 1
    assert 1 <= len(results[0]) <= 3
    assert {t.id for t in results[0]} <= {t.id for t in inserted}
    with pytest.raises(entroq.ClaimTimeout):
        EntroQ(eq.backend).claim_many("empty", limit=2, timeout=0.3)


def test_modify_each_applies_each_on_its_own(eq: EntroQ, other: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("q") for _ in range(4)))
    mine = eq.try_claim_many("q", limit=4, duration=60)
    theirs = insert(eq, "held")
    held = other.try_claim("held", duration=60)
    assert held is not None
    stale = dataclasses.replace(mine[1], version=mine[1].version - 1)
    some_id = uuid.uuid4()

    outcomes = eq.modify_each(
        [mine[0].as_deletion()],
        [stale.as_deletion()],
        [mine[2].as_deletion()],
        [held.as_deletion()],
        [entroq.inserting_into("next", value=b"made")],
        [entroq.inserting_into("next", id=some_id), entroq.inserting_into("next", id=some_id)],
        [mine[3].as_deletion()],
    )

    assert outcomes[0] == ([], [])
    assert outcomes[2] == ([], [])
    assert outcomes[6] == ([], [])
    assert isinstance(outcomes[1], entroq.DependencyError)
    assert outcomes[1].deletes == [stale.id_version()]
    assert isinstance(outcomes[3], entroq.DependencyError)
    assert outcomes[3].claims == [held.id_version()]
    inserted = outcomes[4]
    assert isinstance(inserted, tuple)
    assert [t.value for t in inserted[0]] == [b"made"]
    assert isinstance(outcomes[5], ValueError)
    assert [t.id for t in eq.tasks("q")] == [mine[1].id]
    assert [t.id for t in eq.tasks("held")] == [theirs.id]
    assert [t.value for t in eq.tasks("next")] == [b"made"]


def test_modify_each_reports_a_change_that_cannot_be_made_alone(eq: EntroQ, other: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("q") for _ in range(3)))
    mine = eq.try_claim_many("q", limit=3, duration=60)
    insert(eq, "held")
    held = other.try_claim("held", duration=60)
    assert held is not None
    stale = dataclasses.replace(mine[1], version=mine[1].version - 1)

    outcomes = eq.modify_each(
        [mine[0].as_change(queue="done", value=b"0")],
        [stale.as_change(queue="done")],
        [held.as_change(queue="done")],
        [mine[2].as_change(queue="done", value=b"2")],
    )

    assert isinstance(outcomes[1], entroq.DependencyError)
    assert outcomes[1].changes == [stale.id_version()]
    assert isinstance(outcomes[2], entroq.DependencyError)
    assert outcomes[2].claims == [held.id_version()]
    for outcome, task in ((outcomes[0], mine[0]), (outcomes[3], mine[2])):
        assert isinstance(outcome, tuple)
        [changed] = outcome[1]
        assert (changed.id, changed.queue, changed.version) == (task.id, "done", task.version + 1)
    assert sorted(t.value for t in eq.tasks("done")) == [b"0", b"2"]
    assert [t.id for t in eq.tasks("q")] == [mine[1].id]
    assert [t.id for t in eq.tasks("held")] == [held.id]


def test_queue_matching_by_prefix_and_exact_name(eq: EntroQ) -> None:
    for queue in ("jobs/a", "jobs/b", "jobs/b", "other", "jobs_x", "JOBS/c"):
        insert(eq, queue)

    assert eq.queues() == {"jobs/a": 1, "jobs/b": 2, "other": 1, "jobs_x": 1, "JOBS/c": 1}
    assert eq.queues(match_prefix="jobs/") == {"jobs/a": 1, "jobs/b": 2}
    assert eq.queues(match_exact="other") == {"other": 1}
    assert eq.queues(match_prefix=["jobs/"], match_exact=["other", "missing"]) == {
        "jobs/a": 1,
        "jobs/b": 2,
        "other": 1,
    }
    assert eq.queues(match_prefix="jobs%") == {}, "prefixes are literal, not patterns"
    assert len(eq.queues(limit=2)) == 2
    assert eq.queues_empty(match_exact="missing")
    assert not eq.queues_empty(match_prefix="jobs")
    with pytest.raises(ValueError, match="match"):
        eq.queues_empty()


def test_stats_are_exact(eq: EntroQ, other: EntroQ) -> None:
    for _ in range(4):
        insert(eq, "s")
    # Future and held by nobody: only a modification without a claimant makes one.
    unbound(eq).modify(entroq.new_modification(None, entroq.inserting_into("s", arrival_in=60)))
    assert eq.try_claim("s", duration=60) is not None
    assert other.try_claim("s", duration=60) is not None
    assert other.try_claim("s", duration=60) is not None
    insert(eq, "t")

    stats = eq.queue_stats()

    # Equal by the contract's six fields alone.
    assert stats["s"] == entroq.QueueStat(
        name="s", size=5, claimed=3, available=1, future=1, max_claims=1
    )
    assert stats["t"] == entroq.QueueStat(name="t", size=1, available=1)
    # The earliest arrival rides along for the dashboard, outside comparison and repr.
    assert stats["s"].earliest == min(t.at for t in eq.tasks("s"))
    assert stats["t"].earliest == eq.tasks("t")[0].at
    assert "earliest" not in repr(stats["t"])
    assert eq.queue_stats(match_exact="t") == {"t": stats["t"]}
    assert list(eq.queue_stats(limit=1)) == ["s"]


def test_a_claimed_again_task_counts_its_claims(eq: EntroQ) -> None:
    task = insert(eq, "s")
    claimed = eq.try_claim("s", duration=60)
    assert claimed is not None
    eq.modify(claimed.as_change())  # released: available again, claims kept
    again = eq.try_claim("s", duration=60)

    assert again is not None
    assert again.id == task.id
    assert again.claims == 2
    assert eq.queue_stats()["s"].max_claims == 2


def test_wait_queues_empty(eq: EntroQ) -> None:
    task = insert(eq, "drain")

    def drain() -> None:
        time.sleep(0.3)
        try:
            eq.modify(task.as_deletion())
        finally:
            eq.backend.release_thread()

    threading.Thread(target=drain).start()
    eq.wait_queues_empty(match_exact="drain", poll=0.1, timeout=10)
    assert eq.queues_empty(match_exact="drain")
    insert(eq, "full")
    with pytest.raises(TimeoutError):
        eq.wait_queues_empty(match_exact="full", poll=0.05, timeout=0.2)


def test_renew_for_extends_the_lease(eq: EntroQ, other: EntroQ) -> None:
    insert(eq, value=b"v")
    claimed = eq.try_claim("q", duration=1)
    assert claimed is not None

    renewed = eq.renew_for(claimed, 60)

    assert renewed.id == claimed.id
    assert renewed.version == claimed.version + 1
    assert renewed.claimant == eq.id
    assert renewed.value == b"v"
    assert renewed.at > eq.time() + timedelta(seconds=59)
    assert renewed.claims == claimed.claims


def test_renew_all_for_and_a_lost_lease(eq: EntroQ, other: EntroQ) -> None:
    eq.modify(entroq.inserting_into("q"), entroq.inserting_into("q"))
    first, second = eq.try_claim("q", duration=60), eq.try_claim("q", duration=0.1)
    assert first is not None
    assert second is not None

    renewed = eq.renew_all_for([first, second], 60)
    assert [t.version for t in renewed] == [first.version + 1, second.version + 1]

    time.sleep(0.2)
    expired = eq.modify(renewed[1].as_change(arrival_in=0.1))[1][0]
    time.sleep(0.2)
    taken = other.try_claim("q", duration=60)
    assert taken is not None
    assert taken.id == expired.id
    with pytest.raises(entroq.DependencyError):
        eq.renew_for(expired, 60)


def test_do_with_renew_keeps_the_lease_while_work_runs(eq: EntroQ, other: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=1.0)
    assert claimed is not None
    stolen: list[entroq.Task | None] = []

    def work() -> None:
        time.sleep(2.5)  # over twice the lease: only renewals keep the task
        stolen.append(other.try_claim("q"))

    final = eq.do_with_renew(claimed, 1.0, work)

    assert stolen == [None]
    assert final.version > claimed.version + 1
    assert final.claimant == eq.id
    eq.modify(final.as_deletion())


def test_do_with_renew_passes_on_the_work_error(eq: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=10)
    assert claimed is not None

    def work() -> None:
        raise RuntimeError("work failed")

    with pytest.raises(RuntimeError, match="work failed"):
        eq.do_with_renew(claimed, 10, work)


def test_do_with_renew_reports_a_lost_lease(eq: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=10)
    assert claimed is not None

    taken: list[entroq.Task] = []

    def work() -> None:
        # The task changes under the renewer before its first renewal (at 0.5 s).
        taken.extend(eq.modify(claimed.as_change(value=b"taken", arrival_in=60))[1])
        time.sleep(1.0)

    with pytest.raises(entroq.DependencyError):
        eq.do_with_renew(claimed, 1.0, work)
    assert [t.value for t in taken] == [b"taken"], "the work's own change went through"


def test_time_is_utc(eq: EntroQ) -> None:
    now = eq.time()
    assert now.utcoffset() == timedelta(0)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5


def test_browsing_filters_orders_and_pages_by_keyset(eq: EntroQ, other: EntroQ) -> None:
    start = eq.time() - timedelta(hours=1)
    tasks = [
        insert(eq, "b", value=f"value {i}".encode(), at=start + timedelta(seconds=i // 2))
        for i in range(10)
    ]  # pairs share an ``at``, so the ID breaks ties
    held = other.try_claim("b", duration=60)
    assert held is not None
    # Future and held by nobody: only a modification without a claimant makes one.
    unbound(eq).modify(
        entroq.new_modification(None, entroq.inserting_into("b", arrival_in=60, attempt=3))
    )
    order = sorted((t for t in tasks if t.id != held.id), key=lambda t: (t.at, t.id.int))

    def ids(found: list[entroq.Task]) -> list[uuid.UUID]:
        return [t.id for t in found]

    available = eq.tasks("b", state="available")
    assert ids(available) == [t.id for t in order]
    assert ids(eq.tasks("b", state="claimed")) == [held.id]
    future = eq.tasks("b", state="future", omit_values=True)
    assert len(future) == 1
    assert future[0].value == b""
    assert ids(eq.tasks("b", min_attempt=3)) == ids(future)
    newest = eq.tasks("b", state="available", newest_first=True, limit=3)
    assert ids(newest) == [t.id for t in reversed(order)][:3]

    pages, bound = [], None
    while page := eq.tasks("b", state="available", limit=4, after=bound, preview=5):
        pages.append(ids(page))
        bound = (page[-1].at, page[-1].id)
        assert all(t.value == b"value" for t in page), "previews are cut to 5 bytes"
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [i for page in pages for i in page] == [t.id for t in order]

    middle = order[4]
    before = eq.tasks("b", state="available", newest_first=True, before=(middle.at, middle.id))
    assert ids(before) == [t.id for t in reversed(order[:4])]
    after = eq.tasks("b", state="available", after=(middle.at, middle.id), limit=2)
    assert ids(after) == [t.id for t in order[5:7]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"state": "stuck"}, "state must be one of"),
        ({"min_attempt": -1}, "min_attempt must be"),
        ({"preview": -5}, "preview must be"),
        ({"after": (datetime(2026, 1, 1), uuid.uuid4())}, "timezone-aware"),
        ({"before": "yesterday"}, "an (at, id) pair"),
    ],
)
def test_browsing_refuses_bad_options(eq: EntroQ, options: dict[str, object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        eq.tasks("b", **options)  # type: ignore[arg-type]


@pytest.fixture
def client_clock_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set this process's clock, as the client API's builders read it, 40 s back.

    The stores keep theirs: the memory backend's, the database's, the server's.
    """

    def behind() -> datetime:
        return datetime.now(UTC) - timedelta(seconds=40)

    # The clock of the client API's builders (modify read it before leases became
    # durations), and the one any client code would read.
    monkeypatch.setattr("queues.entroq.modify.utcnow", behind, raising=False)
    monkeypatch.setattr("queues.entroq.tasks.utcnow", behind)


@pytest.mark.usefixtures("client_clock_behind")
def test_leases_run_on_the_store_clock_whatever_the_client_clock(eq: EntroQ, other: EntroQ) -> None:
    insert(eq, value=b"kept")
    claimed = eq.try_claim("q", duration=5)
    assert claimed is not None

    renewed = eq.renew_for(claimed, 30)
    scheduled = insert(eq, "later", arrival_in=30)

    store_now = eq.time()
    assert renewed.value == claimed.value, "the value comes back, sent or not"
    assert renewed.claimant == eq.id, "the renewal kept the claim"
    assert store_now + timedelta(seconds=25) < renewed.at <= store_now + timedelta(seconds=30)
    assert other.try_claim("q") is None, "nobody else can take the renewed task"
    assert store_now + timedelta(seconds=25) < scheduled.at <= store_now + timedelta(seconds=30)


def test_a_renewal_for_no_time_is_refused(eq: EntroQ) -> None:
    insert(eq)
    claimed = eq.try_claim("q", duration=30)
    assert claimed is not None

    with pytest.raises(ValueError, match="positive duration"):
        eq.renew_for(claimed, 0)

    [still] = eq.tasks("q")
    assert (still.version, still.claimant) == (claimed.version, eq.id)


def test_a_change_that_gives_only_a_value_keeps_every_other_field(eq: EntroQ) -> None:
    task = insert(eq, value=b"old", attempt=3, err="boom")

    _, [changed] = eq.modify(entroq.changing(task, value=b"new"))

    assert (changed.queue, changed.value, changed.attempt, changed.err) == ("q", b"new", 3, "boom")
    assert eq.tasks("q") == [changed]


def test_prefixes_match_by_code_point_at_every_edge(eq: EntroQ) -> None:
    names = [
        "a",
        "ab",
        "a/",
        "a/b",
        "a0",
        "A/b",
        "a\U0010ffff",
        "a\U0010ffffz",
        "a\ud7ffx",
        "a\ue000",
        "b",
        "a%",
        "a_",
    ]
    for name in names:
        insert(eq, name)

    def matching(prefix: str) -> list[str]:
        return sorted(eq.queues(match_prefix=prefix))

    for prefix in ["a", "a/", "a\U0010ffff", "a\ud7ff", "a%", "a_", "A", "\U0010ffff", "a/b"]:
        assert matching(prefix) == sorted(n for n in names if n.startswith(prefix)), prefix
    assert matching("") == sorted(names)
    assert sorted(eq.queue_stats(match_prefix=["a/", "b"], match_exact="ab")) == [
        "a/",
        "a/b",
        "ab",
        "b",
    ]
