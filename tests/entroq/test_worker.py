"""Worker: every path of the loop, on every backend."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest

from queues import entroq
from queues.entroq import EntroQ, ModifyArg, Task, ops


def insert(eq: EntroQ, queue: str = "inbox", value: bytes = b"v") -> Task:
    return eq.modify(entroq.inserting_into(queue, value=value))[0][0]


def finish(task: Task) -> Sequence[ModifyArg]:
    return [task.as_deletion()]


def test_work_finishes_each_task(eq: EntroQ) -> None:
    for i in range(3):
        insert(eq, value=str(i).encode())
    seen: list[bytes] = []

    def work(task: Task) -> Sequence[ModifyArg]:
        seen.append(task.value)
        return [task.as_deletion(), entroq.inserting_into("outbox", value=task.value)]

    done = eq.new_worker("inbox").run(work, until_empty=True)

    assert done == 3
    assert sorted(seen) == [b"0", b"1", b"2"]
    assert eq.queues() == {"outbox": 3}


def test_versions_of_the_task_are_made_current_after_renewals(eq: EntroQ, other: EntroQ) -> None:
    task = insert(eq)
    stolen: list[Task | None] = []

    def slow(task: Task) -> Sequence[ModifyArg]:
        time.sleep(2.6)  # past twice the lease: only the renewals keep the task
        stolen.append(other.try_claim("inbox"))
        return [task.as_change(queue="next")]

    eq.new_worker("inbox", lease=1.0).run(slow, max_tasks=1)

    assert stolen == [None]
    [moved] = eq.tasks("next")
    assert moved.id == task.id
    assert moved.version > task.version + 2, "claimed, renewed at least twice, changed"
    assert moved.claimant is None


def test_move_task_error_moves_the_task_to_its_error_queue(eq: EntroQ) -> None:
    task = insert(eq, value=b"bad input")

    def work(task: Task) -> Sequence[ModifyArg]:
        raise entroq.MoveTaskError(ValueError("cannot parse"))

    eq.new_worker("inbox").run(work, until_empty=True)

    assert eq.queues() == {"inbox/err": 1}
    [failed] = eq.tasks("inbox/err")
    assert failed.err == "cannot parse"
    wrapped = entroq.ErrorTaskValue.from_json(failed.value)
    assert wrapped.err == "cannot parse"
    assert (wrapped.task.id, wrapped.task.queue, wrapped.task.value) == (
        task.id,
        "inbox",
        b"bad input",
    )
    assert set(json.loads(failed.value)) == {"task", "err"}


def test_a_custom_error_queue_map(eq: EntroQ) -> None:
    insert(eq)

    def work(task: Task) -> Sequence[ModifyArg]:
        raise entroq.MoveTaskError("no")

    eq.new_worker("inbox", err_qmap=lambda q: f"failed/{q}").run(work, until_empty=True)

    assert eq.queues() == {"failed/inbox": 1}


def test_retry_task_error_counts_attempts_and_delays(eq: EntroQ) -> None:
    task = insert(eq)

    def work(task: Task) -> Sequence[ModifyArg]:
        raise entroq.RetryTaskError("busy, try later")

    before = eq.time()
    eq.new_worker("inbox", retry_delay=60).run(work, max_tasks=1)

    [retried] = eq.tasks("inbox")
    assert retried.id == task.id
    assert (retried.attempt, retried.err) == (1, "busy, try later")
    assert retried.at > before + timedelta(seconds=59)
    assert eq.try_claim("inbox") is None, "not before the retry delay"


def test_retry_moves_the_task_once_max_attempts_is_reached(eq: EntroQ) -> None:
    insert(eq)
    attempts: list[int] = []

    def work(task: Task) -> Sequence[ModifyArg]:
        attempts.append(task.attempt)
        raise entroq.RetryTaskError(f"failure {task.attempt}")

    eq.new_worker("inbox", retry_delay=0, max_attempts=3).run(work, until_empty=True)

    assert attempts == [0, 1, 2]
    [failed] = eq.tasks("inbox/err")
    assert failed.err == "failure 2"
    assert entroq.ErrorTaskValue.from_json(failed.value).task.attempt == 2


def test_a_dependency_error_goes_to_the_handler_and_the_run_goes_on(eq: EntroQ) -> None:
    insert(eq, value=b"1")
    insert(eq, value=b"2")
    errors: list[entroq.DependencyError] = []
    missing = uuid.uuid4()

    def work(task: Task) -> Sequence[ModifyArg]:
        return [task.as_deletion(), entroq.depending_on(missing, 0)]

    done = eq.new_worker("inbox", lease=60, on_dependency_error=errors.append).run(
        work, max_tasks=2
    )

    assert done == 2
    assert [e.depends for e in errors] == [[entroq.TaskID(missing, 0)]] * 2
    assert eq.queues() == {"inbox": 2}, "nothing of a failed modification is applied"


def test_a_dependency_handler_that_raises_ends_the_run(eq: EntroQ) -> None:
    insert(eq)
    insert(eq)

    def work(task: Task) -> Sequence[ModifyArg]:
        return [entroq.depending_on(uuid.uuid4(), 0)]

    def give_up(error: entroq.DependencyError) -> None:
        raise RuntimeError("configuration changed")

    worker = eq.new_worker("inbox", on_dependency_error=give_up)
    with pytest.raises(RuntimeError, match="configuration changed"):
        worker.run(work)


def test_a_lost_lease_abandons_the_task_and_goes_on(
    eq: EntroQ, caplog: pytest.LogCaptureFixture
) -> None:
    first = insert(eq, value=b"lost")
    insert(eq, value=b"kept")
    processed: list[bytes] = []

    def work(task: Task) -> Sequence[ModifyArg]:
        if task.value == b"lost":
            # An operator, acting as the claimant, takes the task over before the
            # worker can renew it.
            eq.modify(task.as_change(queue="taken", arrival_in=0), claimant=task.claimant)
            time.sleep(0.6)  # past the first renewal, which fails
        processed.append(task.value)
        return [task.as_deletion()]

    errors: list[entroq.DependencyError] = []
    worker = eq.new_worker("inbox", lease=0.6, on_dependency_error=errors.append)
    with caplog.at_level("INFO", logger="queues.entroq.worker"):
        done = worker.run(work, max_tasks=2)

    assert done == 2
    assert f"task {first.id} from inbox: lease lost, abandoned" in caplog.text
    assert errors == [], "abandoned at the lost renewal, not at the final modification"
    assert sorted(processed) == [b"kept", b"lost"]
    assert [t.id for t in eq.tasks("taken")] == [first.id], "the abandoned task is untouched"
    assert eq.tasks("inbox") == []


def test_work_that_returns_no_modification_ends_the_run(eq: EntroQ) -> None:
    insert(eq)

    def work(task: Task) -> Sequence[ModifyArg]:
        return None  # type: ignore[return-value]  # a bug, to be seen

    with pytest.raises(TypeError):
        eq.new_worker("inbox").run(work)
    assert eq.queues() == {"inbox": 1}, "not moved away as if the store had refused it"


def test_any_other_exception_ends_the_run(eq: EntroQ) -> None:
    insert(eq)

    def work(task: Task) -> Sequence[ModifyArg]:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        eq.new_worker("inbox").run(work)
    [task] = eq.tasks("inbox")
    assert task.claims == 1, "the task stays, claimed until its lease ends"


def test_stop_ends_an_idle_run_promptly(eq: EntroQ) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()

    try:
        done = eq.new_worker("empty").run(finish, stop)
    finally:
        eq.backend.release_thread()

    assert done == 0
    assert time.monotonic() - started < 2


def test_stop_lets_the_task_in_hand_finish(eq: EntroQ) -> None:
    insert(eq)
    insert(eq)
    stop = threading.Event()

    def work(task: Task) -> Sequence[ModifyArg]:
        stop.set()  # asked to stop while working
        time.sleep(0.2)
        return [task.as_deletion()]

    done = eq.new_worker("inbox").run(work, stop)

    assert done == 1
    assert len(eq.tasks("inbox")) == 1


def test_a_worker_needs_sane_settings(eq: EntroQ) -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        eq.new_worker()
    with pytest.raises(ValueError, match="max_attempts"):
        eq.new_worker("q", max_attempts=-1)
    with pytest.raises(ValueError, match="lease must be positive"):
        eq.new_worker("q", lease=0)


@pytest.mark.django_db(transaction=True)
def test_a_worker_refuses_to_run_inside_a_transaction() -> None:
    from django.db import transaction

    eq = EntroQ(entroq.DjangoBackend())
    with transaction.atomic(), pytest.raises(ValueError, match="inside a database transaction"):
        eq.new_worker("inbox").run(finish)


def test_a_dependency_error_in_work_abandons_the_task_and_goes_on(
    eq: EntroQ, caplog: pytest.LogCaptureFixture
) -> None:
    insert(eq, value=b"1")
    insert(eq, value=b"2")
    errors: list[entroq.DependencyError] = []
    missing = uuid.uuid4()

    def work(task: Task) -> Sequence[ModifyArg]:
        eq.modify(entroq.depending_on(missing, 0))  # a configuration task has gone
        return [task.as_deletion()]

    worker = eq.new_worker("inbox", lease=60, on_dependency_error=errors.append)
    with caplog.at_level("INFO", logger="queues.entroq.worker"):
        done = worker.run(work, max_tasks=2)

    assert done == 2
    assert [e.depends for e in errors] == [[entroq.TaskID(missing, 0)]] * 2
    assert caplog.text.count("dependency error in work, abandoned") == 2
    assert [t.claims for t in eq.tasks("inbox")] == [1, 1], "abandoned: back when leases lapse"


LONGEST = "q" * entroq.MAX_QUEUE_LENGTH


@pytest.mark.parametrize("inbox", [LONGEST[:497], LONGEST, LONGEST[:496] + "/err"])
def test_the_longest_inbox_has_an_error_queue(eq: EntroQ, inbox: str) -> None:
    task = insert(eq, inbox, value=b"poison")

    def work(task: Task) -> Sequence[ModifyArg]:
        raise entroq.MoveTaskError("cannot parse")

    assert eq.new_worker(inbox).run(work, max_tasks=1) == 1

    [error_queue] = eq.queues()
    assert error_queue == entroq.default_err_qmap(inbox)
    assert len(error_queue) <= entroq.MAX_QUEUE_LENGTH
    assert error_queue.endswith("/err")
    assert error_queue.startswith(inbox[:400])
    assert entroq.default_err_qmap(inbox + "x") != error_queue, "one error queue an inbox"
    [failed] = eq.tasks(error_queue)
    assert entroq.ErrorTaskValue.from_json(failed.value).task.id == task.id
    assert ops.error_record(failed) is not None, "the dashboard can send it back"


def test_a_move_that_cannot_be_made_retries_the_task_later(
    eq: EntroQ, caplog: pytest.LogCaptureFixture
) -> None:
    insert(eq, value=b"poison")
    insert(eq, value=b"fine")

    def work(task: Task) -> Sequence[ModifyArg]:
        if task.value == b"poison":
            raise entroq.MoveTaskError("cannot parse")
        return [task.as_deletion()]

    worker = eq.new_worker("inbox", err_qmap=lambda inbox: "", retry_delay=60)
    with caplog.at_level("INFO", logger="queues.entroq.worker"):
        done = worker.run(work, max_tasks=2)

    assert done == 2
    [kept] = eq.tasks("inbox")
    assert kept.value == b"poison"
    assert kept.attempt == 1
    assert kept.at > eq.time() + timedelta(seconds=50), "not at once: after retry_delay"
    assert kept.err.startswith("cannot parse (not moved: queue must not be empty")
    assert "not moved to its error queue (queue must not be empty), retry 1 in 60 s" in caplog.text


def test_a_result_the_store_refuses_moves_the_task_to_its_error_queue(eq: EntroQ) -> None:
    task = insert(eq)
    insert(eq, value=b"next")

    def work(task: Task) -> Sequence[ModifyArg]:
        if task.value == b"next":
            return [task.as_deletion()]
        return [task.as_deletion(), task.as_dependency()]  # one ID twice: malformed

    assert eq.new_worker("inbox").run(work, max_tasks=2) == 2

    assert eq.queues() == {"inbox/err": 1}
    [failed] = eq.tasks("inbox/err")
    assert failed.err.startswith("the work's modification was refused: task ")
    assert entroq.ErrorTaskValue.from_json(failed.value).task.id == task.id


def test_a_renewal_whose_answer_was_lost_keeps_the_task(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    task = insert(eq)
    store_modify = eq.backend.modify
    lost: list[entroq.Modification] = []

    def answer_lost(mod: entroq.Modification) -> tuple[list[Task], list[Task]]:
        applied = store_modify(mod)
        if mod.changes and not lost:  # the first renewal: applied, but no answer came
            lost.append(mod)
            raise entroq.BackendUnavailable("the connection dropped before the answer")
        return applied

    monkeypatch.setattr(eq.backend, "modify", answer_lost)

    def slow(task: Task) -> Sequence[ModifyArg]:
        time.sleep(1.6)  # through two renewals of a 1 s lease
        return [task.as_change(queue="done")]

    with caplog.at_level("INFO", logger="queues.entroq.worker"):
        eq.new_worker("inbox", lease=1.0).run(slow, max_tasks=1)

    assert lost, "a renewal was applied and its answer lost"
    assert "lease lost" not in caplog.text
    [finished] = eq.tasks("done")
    assert finished.id == task.id


def test_the_run_waits_out_an_outage_and_goes_on(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    insert(eq)
    insert(eq)
    store_claim = eq.backend.try_claim
    outage = {"left": 2}

    def away(query: entroq.ClaimQuery) -> Task | None:
        if outage["left"]:
            outage["left"] -= 1
            raise entroq.BackendUnavailable("connection refused")
        return store_claim(query)

    monkeypatch.setattr(eq.backend, "try_claim", away)
    monkeypatch.setattr("queues.entroq.worker.OUTAGE_BACKOFF", 0.05)
    with caplog.at_level("WARNING", logger="queues.entroq.worker"):
        done = eq.new_worker("inbox").run(finish, until_empty=True)

    assert done == 2
    assert eq.queues() == {}
    assert "store unavailable (connection refused); trying again in 0.05 s" in caplog.text
    assert "trying again in 0.1 s" in caplog.text, "the wait doubles while it lasts"


def test_an_outage_met_inside_work_is_waited_out_too(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert(eq)
    monkeypatch.setattr("queues.entroq.worker.OUTAGE_BACKOFF", 0.05)
    calls: list[Task] = []

    def work(task: Task) -> Sequence[ModifyArg]:
        calls.append(task)
        if len(calls) == 1:
            raise entroq.BackendUnavailable("the store went away mid-task")
        return [task.as_deletion()]

    # The first claim's 1 s lease lapses, and the task comes back to the same worker.
    done = eq.new_worker("inbox", lease=1).run(work, max_tasks=2)

    assert done == 2
    assert [t.id for t in calls] == [calls[0].id] * 2
    assert eq.queues() == {}


def test_a_renewal_is_never_taken_for_another_workers_claim(eq: EntroQ) -> None:
    """Workers of one claimant ID (threads of a process, holders of one API token):
    when one's lease lapses and another claims the task, the first must see it lost."""
    from queues.entroq.leases import LeaseKeeper

    insert(eq)
    first = eq.try_claim("inbox", duration=0.3)
    assert first is not None
    time.sleep(0.4)  # its lease lapses, its renewals having failed
    same_id = entroq.EntroQ(
        eq.backend, claimant_id=None if isinstance(eq.backend, entroq.HTTPBackend) else eq.id
    )
    second = same_id.try_claim("inbox", duration=60)
    assert second is not None
    assert second.claimant == first.claimant, "one claimant ID"

    keeper = LeaseKeeper(eq, 30)
    try:
        [as_held] = keeper._as_held([first])
    finally:
        keeper.close()

    assert as_held == first, "not adopted: the claim since is another worker's"
    with pytest.raises(entroq.DependencyError):
        eq.renew_for(as_held, 30)


def run_prefetching(
    eq: EntroQ, work: entroq.worker.Work, *, size: int, threads: int = 1, lease: float = 30
) -> int:
    """Run ``threads`` workers of one client on one prefetcher and acks until empty."""
    prefetcher = entroq.Prefetcher(eq, ["inbox"], size=size, lease=lease)
    acks = entroq.Acks(eq.backend)
    counts: list[int] = []

    def run() -> None:
        try:
            counts.append(
                eq.new_worker("inbox", lease=lease).run(
                    work, until_empty=True, prefetcher=prefetcher, acks=acks
                )
            )
        finally:
            eq.backend.release_thread()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    prefetcher.close()
    acks.close()
    return sum(counts)


def test_prefetching_workers_finish_each_task_once(eq: EntroQ) -> None:
    inserted = eq.modify(*(entroq.inserting_into("inbox") for _ in range(60)))[0]
    seen: list[uuid.UUID] = []
    lock = threading.Lock()

    def work(task: Task) -> Sequence[ModifyArg]:
        with lock:
            seen.append(task.id)
        return [task.as_deletion(), entroq.inserting_into("outbox", value=task.value)]

    assert run_prefetching(eq, work, size=7, threads=3) == 60
    assert sorted(seen) == sorted(t.id for t in inserted)
    assert eq.queues() == {"outbox": 60}


def test_prefetched_tasks_are_renewed_while_they_wait(eq: EntroQ, other: EntroQ) -> None:
    for _ in range(3):
        insert(eq)
    stolen: list[Task | None] = []

    def slow(task: Task) -> Sequence[ModifyArg]:
        time.sleep(0.8)  # the third waits 1.6 s: past its 1 s lease but for renewals
        stolen.append(other.try_claim("inbox"))
        return [task.as_deletion()]

    assert run_prefetching(eq, slow, size=3, lease=1.0) == 3
    assert stolen == [None, None, None]
    assert eq.queues() == {}


def test_an_acknowledgement_refused_is_reported_alone(eq: EntroQ) -> None:
    tasks = [insert(eq) for _ in range(4)]
    errors: list[entroq.DependencyError] = []

    def finish_but_one(task: Task) -> Sequence[ModifyArg]:
        if task.id == tasks[0].id:  # a deletion of a version that is no more
            return [dataclasses.replace(task, version=task.version - 1).as_deletion()]
        if task.id == tasks[1].id:  # and one that depends on a task that is no more
            return [task.as_deletion(), entroq.depending_on(uuid.uuid4(), 0)]
        return [task.as_deletion()]

    prefetcher = entroq.Prefetcher(eq, ["inbox"], size=4, lease=30)
    acks = entroq.Acks(eq.backend)
    worker = eq.new_worker("inbox", on_dependency_error=errors.append)
    try:
        assert worker.run(finish_but_one, until_empty=True, prefetcher=prefetcher, acks=acks) == 4
    finally:
        prefetcher.close()
        acks.close()

    assert len(errors) == 2
    assert sorted(t.id for t in eq.tasks("inbox")) == sorted([tasks[0].id, tasks[1].id])
