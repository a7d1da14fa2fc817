"""``manage.py eqworker`` as real processes: signals, crashes, and many workers."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from queues import entroq
from queues.entroq import EntroQ
from tests.helpers import start_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def eq() -> Iterator[EntroQ]:
    with EntroQ(entroq.DjangoBackend()) as client:
        yield client


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "events.log"
    path.touch()
    return path


def events(log: Path) -> Counter[str]:
    return Counter(log.read_text().splitlines())


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def worker(log: Path, *args: str, sleep: float = 0) -> subprocess.Popen[str]:
    return start_manage(
        "eqworker", "--queue", "jobs", *args, EQ_TEST_LOG=str(log), EQ_TEST_SLEEP=str(sleep)
    )


def test_a_killed_worker_s_task_is_redelivered_and_finished_once(eq: EntroQ, log: Path) -> None:
    [task], _ = eq.modify(entroq.inserting_into("jobs"))
    first = worker(log, "--handler", "tests.handlers.slow", "--lease", "1", sleep=30)
    wait_for(lambda: events(log)[f"start {task.id}"] == 1)

    first.kill()  # SIGKILL in the middle of the task: no chance to clean up
    first.wait(10)
    second = worker(
        log, "--handler", "tests.handlers.slow", "--max-tasks", "1", "-v", "2", sleep=0.1
    )
    _, err = second.communicate(timeout=60)

    assert second.returncode == 0, err
    assert events(log) == Counter({f"start {task.id}": 2, f"finish {task.id}": 1})
    assert eq.queues() == {}
    assert f"task {task.id} from jobs: done in" in err, "-v 2 logs each task done"


def test_sigterm_lets_the_task_in_hand_finish(eq: EntroQ, log: Path) -> None:
    [task, waiting], _ = eq.modify(entroq.inserting_into("jobs"), entroq.inserting_into("jobs"))
    process = worker(log, "--handler", "tests.handlers.slow", sleep=1.5)
    wait_for(lambda: sum(events(log).values()) == 1)
    [started] = events(log)

    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    finished_id = started.split()[1]
    assert events(log) == Counter({f"start {finished_id}": 1, f"finish {finished_id}": 1})
    [left] = eq.tasks("jobs")
    assert str(left.id) != finished_id
    assert left.claims == 0, "no task is claimed after the signal"
    assert {str(task.id), str(waiting.id)} == {finished_id, str(left.id)}


def test_a_second_signal_exits_at_once(eq: EntroQ, log: Path) -> None:
    eq.modify(entroq.inserting_into("jobs"))
    process = worker(log, "--handler", "tests.handlers.slow", sleep=60)
    wait_for(lambda: sum(events(log).values()) == 1)

    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=10)

    assert process.returncode == 1
    assert "finish" not in log.read_text()


def test_worker_processes_drain_thousands_of_tasks_exactly_once(eq: EntroQ, log: Path) -> None:
    inserted, _ = eq.modify(*(entroq.inserting_into("jobs") for _ in range(2000)))
    processes = [
        worker(log, "--handler", "tests.handlers.finish", "--batch", "--concurrency", "2")
        for _ in range(2)
    ]
    # Read every process's output as it comes: a full pipe would stall its worker.
    with ThreadPoolExecutor() as pool:
        outputs = list(pool.map(lambda p: p.communicate(timeout=150), processes))
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err

    finished = events(log)
    assert finished == Counter({f"finish {t.id}": 1 for t in inserted})
    assert eq.queues() == {}


def test_prefetching_workers_drain_thousands_of_tasks_exactly_once(eq: EntroQ, log: Path) -> None:
    inserted, _ = eq.modify(*(entroq.inserting_into("jobs") for _ in range(2000)))
    processes = [
        worker(log, "--handler", "tests.handlers.finish", "--batch", "--prefetch", "10", "-v", "2")
        for _ in range(2)
    ]
    with ThreadPoolExecutor() as pool:
        outputs = list(pool.map(lambda p: p.communicate(timeout=150), processes))
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err

    assert events(log) == Counter({f"finish {t.id}": 1 for t in inserted})
    assert eq.queues() == {}
    logged = sum(err.count(": done in") for _, err in outputs)
    assert logged == len(inserted), "each task is logged once, when acknowledged"


def test_sigterm_gives_back_the_prefetched_tasks_not_started(eq: EntroQ, log: Path) -> None:
    inserted, _ = eq.modify(*(entroq.inserting_into("jobs") for _ in range(5)))
    process = worker(log, "--handler", "tests.handlers.slow", "--prefetch", "5", sleep=1.5)
    wait_for(lambda: sum(events(log).values()) == 1)
    [started] = events(log)

    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    finished_id = started.split()[1]
    assert events(log) == Counter({f"start {finished_id}": 1, f"finish {finished_id}": 1})
    left = eq.tasks("jobs")
    assert {str(t.id) for t in left} == {str(t.id) for t in inserted} - {finished_id}
    now = eq.time()
    assert all(t.at <= now for t in left), "given back: available at once, not at lease end"
    assert "gave back 4 prefetched task(s)" in err


def test_a_failing_handler_ends_the_command_with_an_error(eq: EntroQ, log: Path) -> None:
    eq.modify(entroq.inserting_into("jobs"))
    process = worker(log, "--handler", "tests.handlers.broken", "--batch")
    _, err = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "handler bug" in err
    assert "a worker failed" in err


def test_bad_arguments_are_one_clear_error(eq: EntroQ) -> None:
    with pytest.raises(CommandError, match=r"cannot import handler 'no\.such\.handler'"):
        call_command("eqworker", "--handler", "no.such.handler", "--queue", "jobs")
    with pytest.raises(CommandError, match="concurrency"):
        call_command(
            "eqworker", "--handler", "tests.handlers.finish", "--queue", "q", "--concurrency", "0"
        )
    with pytest.raises(CommandError, match="queue must not be empty"):
        call_command("eqworker", "--handler", "tests.handlers.finish", "--queue", "")
    for option, value, message in [
        ("--lease", "0", "lease must be positive"),
        ("--lease", "nan", "NaN"),
        ("--retry-delay", "-1", "must not be negative"),
        ("--max-attempts", "-1", "max_attempts"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command(
                "eqworker", "--handler", "tests.handlers.finish", "--queue", "q", option, value
            )


def test_batch_mode_in_process(eq: EntroQ, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EQ_TEST_LOG", str(log))
    eq.modify(*(entroq.inserting_into("jobs") for _ in range(5)))

    call_command("eqworker", "--handler", "tests.handlers.finish", "--queue", "jobs", "--batch")

    assert sum(events(log).values()) == 5
    assert eq.queues() == {}


@pytest.mark.postgres
def test_a_worker_reconnects_after_losing_its_database_connections(eq: EntroQ, log: Path) -> None:
    from django.db import connection

    process = worker(log, "--handler", "tests.handlers.finish", "--lease", "5")
    [first], _ = eq.modify(entroq.inserting_into("jobs"))
    wait_for(lambda: events(log)[f"finish {first.id}"] == 1)

    # What a database restart does to a client: every connection of the worker dies.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        (terminated,) = cursor.fetchone()
    assert terminated >= 2, "the worker's query and LISTEN connections"
    [second], _ = eq.modify(entroq.inserting_into("jobs"))

    try:
        wait_for(lambda: events(log)[f"finish {second.id}"] == 1, timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert eq.queues() == {}
    assert err.count("database error") <= 3, "reconnects without a tight error loop"
