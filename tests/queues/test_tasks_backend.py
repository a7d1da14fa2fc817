"""django.tasks on EntroQ: enqueue, run in eqworker, read results from anywhere."""

from __future__ import annotations

import contextlib
import io
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queues import entroq
from queues.entroq import EntroQ
from queues.tasks_backend import EntroQBackend
from tests import tasks
from tests.helpers import start_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
QUEUE = "django-tasks/default"


@pytest.fixture
def eq() -> Iterator[EntroQ]:
    with EntroQ(entroq.DjangoBackend()) as client:
        yield client


def work_off() -> None:
    call_command("eqworker", "--django-tasks", "--batch", stderr=io.StringIO())


def test_a_task_runs_and_its_result_is_kept(eq: EntroQ) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert eq.queues() == {QUEUE: 1}

    work_off()

    done = tasks.add.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert (done.args, done.kwargs) == ([2, 3], {})
    assert done.enqueued_at is not None
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert eq.queues() == {f"{QUEUE}/done": 1}
    assert [str(t.id) for t in eq.tasks(f"{QUEUE}/done")] == [result.id], "moved with its ID"
    result.refresh()
    refreshed: TaskResultStatus = result.status  # refresh() changes the result in place
    assert refreshed == TaskResultStatus.SUCCESSFUL


def test_a_failing_task_keeps_its_error_and_traceback(eq: EntroQ) -> None:
    result = tasks.fail.enqueue("no such user")

    work_off()

    failed = default_task_backend.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class is ValueError
    assert "no such user" in error.traceback
    assert "tests/tasks.py" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018
    assert eq.queues() == {f"{QUEUE}/err": 1}


def test_async_and_context_tasks(eq: EntroQ) -> None:
    doubled = tasks.async_double.enqueue(21)
    attempt = tasks.attempt_number.enqueue()

    work_off()

    value: Any = tasks.async_double.get_result(doubled.id).return_value  # awaited by the worker
    assert value == 42
    assert tasks.attempt_number.get_result(attempt.id).return_value == 1


def test_run_after_defers_the_task(eq: EntroQ) -> None:
    later = timezone.now() + timedelta(minutes=5)
    result = tasks.add.using(run_after=later).enqueue(1, 1)

    work_off()

    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
    [stored] = eq.tasks(QUEUE)
    assert stored.at == later


def test_status_is_running_while_claimed_and_ready_once_the_lease_lapses(eq: EntroQ) -> None:
    result = tasks.add.enqueue(1, 2)
    claimed = eq.try_claim(QUEUE, duration=2)
    assert claimed is not None

    running = tasks.add.get_result(result.id)
    assert running.status == TaskResultStatus.RUNNING
    assert running.worker_ids == [str(eq.id)]
    assert running.started_at == claimed.modified

    time.sleep(2.1)  # the worker "crashed": its lease lapses
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
    work_off()
    assert tasks.add.get_result(result.id).return_value == 3


def test_enqueueing_in_a_transaction_is_undone_by_its_rollback(eq: EntroQ) -> None:
    def enqueue_and_fail() -> None:
        with transaction.atomic():
            tasks.add.enqueue(1, 1)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        enqueue_and_fail()
    assert eq.queues() == {}


def test_enqueues_share_one_client_and_take_one_statement_each(eq: EntroQ) -> None:
    backend = task_backends["default"]
    assert isinstance(backend, EntroQBackend)

    with transaction.atomic(), CaptureQueriesContext(connection) as enqueues:
        results = [tasks.add.enqueue(n, 1) for n in range(3)]

    assert len(enqueues) == 3, [q["sql"] for q in enqueues.captured_queries]
    assert backend.shared_client() is backend.shared_client()
    stored = {str(t.id): t for t in eq.tasks(QUEUE)}
    assert stored.keys() == {r.id for r in results}
    assert {t.claimant for t in stored.values()} == {backend.shared_client().id}
    for result in results:
        assert result.enqueued_at == stored[result.id].created
    work_off()
    assert [tasks.add.get_result(r.id).return_value for r in results] == [1, 2, 3]


def test_a_rolled_back_savepoint_takes_only_its_own_enqueues(eq: EntroQ) -> None:
    with transaction.atomic():
        kept = tasks.add.enqueue(1, 1)
        with contextlib.suppress(RuntimeError), transaction.atomic():
            tasks.add.enqueue(2, 2)
            raise RuntimeError("the inner block fails")
        assert len(eq.tasks(QUEUE)) == 1

    assert [str(t.id) for t in eq.tasks(QUEUE)] == [kept.id]


def test_the_shared_client_follows_the_value_limit(eq: EntroQ) -> None:
    limited = override_settings(ENTROQ={"MAX_VALUE_BYTES": 100})
    with limited, pytest.raises(ValueError, match="over the limit"):
        tasks.add.enqueue(10**200, 1)
    assert tasks.add.enqueue(10**200, 1).status == TaskResultStatus.READY


def test_signals_are_sent(eq: EntroQ) -> None:
    received: list[tuple[str, TaskResultStatus]] = []

    def receiver(name: str) -> Any:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            received.append((name, task_result.status))

        return receive

    handlers = [receiver(n) for n in ("enqueued", "started", "finished")]
    for signal_, handler in zip(
        (task_enqueued, task_started, task_finished), handlers, strict=True
    ):
        signal_.connect(handler)
    try:
        tasks.add.enqueue(1, 2)
        work_off()
    finally:
        for signal_, handler in zip(
            (task_enqueued, task_started, task_finished), handlers, strict=True
        ):
            signal_.disconnect(handler)

    assert received == [
        ("enqueued", TaskResultStatus.READY),
        ("started", TaskResultStatus.RUNNING),
        ("finished", TaskResultStatus.SUCCESSFUL),
    ]


def test_unknown_results_do_not_exist(eq: EntroQ) -> None:
    [other], _ = eq.modify(entroq.inserting_into("not-django", value=b"{}"))

    for result_id in ("nope", "6f1f0b4e-0000-4000-8000-000000000000", str(other.id)):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(result_id)


def test_a_result_is_read_by_another_process(eq: EntroQ) -> None:
    result = tasks.add.enqueue(20, 22)
    worker = start_manage("eqworker", "--django-tasks", "--batch")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err

    reader = start_manage(
        "shell",
        "-c",
        "from tests import tasks; "
        f"r = tasks.add.get_result({result.id!r}); print(r.status, r.return_value)",
    )
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert out.strip().splitlines()[-1].split() == ["SUCCESSFUL", "42"]


def test_a_crashed_worker_never_leaves_a_task_running(eq: EntroQ, tmp_path: Path) -> None:
    log = tmp_path / "ran.log"
    result = tasks.sleep_then_record.enqueue()
    first = start_manage(
        "eqworker", "--django-tasks", "--lease", "1", EQ_TEST_LOG=str(log), EQ_TEST_SLEEP="30"
    )
    deadline = time.monotonic() + 30
    while tasks.sleep_then_record.get_result(result.id).status != TaskResultStatus.RUNNING:
        assert time.monotonic() < deadline, "the worker never started the task"
        time.sleep(0.05)

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(1.2)  # the lease lapses

    assert tasks.sleep_then_record.get_result(result.id).status == TaskResultStatus.READY
    assert not log.exists()
    second = start_manage(
        "eqworker", "--django-tasks", "--max-tasks", "1", EQ_TEST_LOG=str(log), EQ_TEST_SLEEP="0"
    )
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    done = tasks.sleep_then_record.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL, "another worker ran it"
    assert log.read_text() == "ran\n"


def test_prune_deletes_old_results(eq: EntroQ) -> None:
    tasks.add.enqueue(1, 1)
    work_off()

    call_command(
        "eq",
        "prune",
        f"{QUEUE}/done",
        "--older-than",
        "1h",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert eq.queues() == {f"{QUEUE}/done": 1}, "a fresh result stays"
    call_command(
        "eq",
        "prune",
        f"{QUEUE}/done",
        "--older-than",
        "0",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert eq.queues() == {}
    with pytest.raises(CommandError, match="not an age"):
        call_command("eq", "prune", "q", "--older-than", "soon")


def test_django_tasks_mode_takes_its_own_arguments() -> None:
    with pytest.raises(CommandError, match="not --handler"):
        call_command("eqworker", "--django-tasks", "--queue", "x")
    with pytest.raises(CommandError, match="--handler and --queue, or --django-tasks"):
        call_command("eqworker")


ANY_QUEUE_NAME = override_settings(
    TASKS={"default": {"BACKEND": "queues.tasks_backend.EntroQBackend", "QUEUES": []}}
)


@ANY_QUEUE_NAME
def test_with_queues_empty_a_worker_serves_every_queue_under_the_prefix(eq: EntroQ) -> None:
    results = [
        tasks.add.using(queue_name=name).enqueue(i, 1)
        for i, name in enumerate(["default", "reports", "mail/slow", "donezo"])
    ]
    [old_result], _ = eq.modify(  # a result kept before: not a task to run again
        entroq.inserting_into(
            "django-tasks/reports/done",
            value=b'{"task": "tests.tasks.fail", "args": ["ran again"], "kwargs": {}}',
        )
    )

    work_off()

    assert [tasks.add.get_result(r.id).return_value for r in results] == [1, 2, 3, 4]
    [kept] = eq.tasks("django-tasks/reports/done", ids=[old_result.id])
    assert kept.version == old_result.version, "results are never claimed"
    assert eq.queues(match_prefix="django-tasks/") == {
        "django-tasks/default/done": 1,
        "django-tasks/reports/done": 2,
        "django-tasks/mail/slow/done": 1,
        "django-tasks/donezo/done": 1,
    }


@ANY_QUEUE_NAME
def test_with_queues_empty_a_queue_name_that_reads_as_results_is_refused() -> None:
    for name in ("x/done", "x/err", "done/x/err", "err"):
        with pytest.raises(InvalidTask, match="ends like a queue of results"):
            tasks.add.using(queue_name=name).enqueue(1, 1)
    tasks.add.using(queue_name="x/errands").enqueue(1, 1)


def test_a_task_that_cannot_be_run_fails_without_stopping_the_worker(eq: EntroQ) -> None:
    [gone], _ = eq.modify(
        entroq.inserting_into(
            QUEUE, value=b'{"task": "tests.tasks.removed", "args": [], "kwargs": {}}'
        )
    )
    [damaged], _ = eq.modify(entroq.inserting_into(QUEUE, value=b"not json"))
    result = tasks.add.enqueue(1, 2)

    work_off()

    assert tasks.add.get_result(result.id).return_value == 3, "the worker went on"
    failed = {t.id: t for t in eq.tasks(f"{QUEUE}/err")}
    assert failed.keys() == {gone.id, damaged.id}
    assert failed[gone.id].err.startswith("cannot run: ")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(damaged.id))


@pytest.mark.parametrize("prefix", ["", "tasks-"])
def test_with_queues_empty_a_prefix_that_is_not_a_path_is_refused(prefix: str) -> None:
    tasks_setting = {
        "BACKEND": "queues.tasks_backend.EntroQBackend",
        "QUEUES": [],
        "OPTIONS": {"QUEUE_PREFIX": prefix},
    }
    with (
        override_settings(TASKS={"default": tasks_setting}),
        pytest.raises(CommandError, match="does not end with '/'"),
    ):
        work_off()


def test_a_queue_of_results_is_not_served() -> None:
    with pytest.raises(CommandError, match="is a queue of results"):
        call_command("eqworker", "--django-tasks", "--queue-name", "x/done", "--batch")
