"""What only the Django backend does: lean SQL, PostgreSQL notifications, SQLite locking."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from queues import entroq
from queues.entroq import EntroQ
from queues.entroq.django_backend import NOTIFY_CHANNEL
from tests.helpers import start_python

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eq() -> Iterator[EntroQ]:
    with EntroQ(entroq.DjangoBackend()) as client:
        yield client


def test_claim_and_delete_are_one_statement_each(eq: EntroQ) -> None:
    eq.modify(entroq.inserting_into("q"), entroq.inserting_into("other"))

    with CaptureQueriesContext(connection) as claim:
        task = eq.try_claim("q", "other")
    assert task is not None
    with CaptureQueriesContext(connection) as delete:
        eq.modify(task.as_deletion())

    if connection.vendor == "postgresql":  # SQLite claims in a short IMMEDIATE transaction
        assert len(claim) == 1, [q["sql"] for q in claim.captured_queries]
    assert len(delete) == 1, [q["sql"] for q in delete.captured_queries]
    untouched = "other" if task.queue == "q" else "q"
    assert eq.queues() == {untouched: 1}


def test_a_failed_fast_delete_reports_why(eq: EntroQ) -> None:
    [task], _ = eq.modify(entroq.inserting_into("q"))
    claimed = eq.try_claim("q", duration=60)
    assert claimed is not None

    with pytest.raises(entroq.DependencyError) as stale:
        eq.modify(task.as_deletion())
    with pytest.raises(entroq.DependencyError) as held:
        EntroQ(eq.backend).modify(claimed.as_deletion())

    assert stale.value.deletes == [task.id_version()]
    assert held.value.claims == [claimed.id_version()]


def test_enqueueing_inside_a_transaction_rolls_back_with_it(eq: EntroQ) -> None:
    def enqueue_then_fail() -> None:
        with transaction.atomic():
            eq.modify(entroq.inserting_into("q"))
            assert eq.queues() == {"q": 1}
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert eq.queues() == {}


@pytest.mark.postgres  # SQLite has one writer: the other thread would wait for our lock
def test_each_thread_claims_on_its_own_connection(eq: EntroQ) -> None:
    seen: list[entroq.Task | None] = []

    def claim_elsewhere() -> None:
        try:
            seen.append(EntroQ(eq.backend).try_claim("q"))
        finally:
            eq.backend.release_thread()

    eq.try_claim("warm-up")  # the backend has served this thread first
    with transaction.atomic():
        eq.modify(entroq.inserting_into("q"))
        thread = threading.Thread(target=claim_elsewhere)
        thread.start()
        thread.join(30)

    assert seen == [None], "another thread must not see an uncommitted insert"
    assert eq.try_claim("q") is not None


def test_concurrent_modifications_of_the_same_tasks_lose_no_update(eq: EntroQ) -> None:
    [a, b], _ = eq.modify(entroq.inserting_into("q"), entroq.inserting_into("q"))
    successes: list[int] = []
    failures: list[BaseException] = []

    def change_both(reverse: bool) -> None:
        client = EntroQ(eq.backend)
        try:
            for _ in range(40):
                current = client.tasks(ids=[a.id, b.id])
                if reverse:
                    current.reverse()
                try:
                    client.modify(*(t.as_change(value=t.value + b".") for t in current))
                    successes.append(1)
                except entroq.DependencyError:
                    pass  # a concurrent change won: expected
        except BaseException as exc:
            failures.append(exc)
        finally:
            eq.backend.release_thread()

    threads = [threading.Thread(target=change_both, args=(i % 2 == 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert failures == []
    final = {t.id: t for t in eq.tasks("q")}
    assert final[a.id].version == final[b.id].version == len(successes)
    assert final[a.id].value == b"." * len(successes)


def test_concurrent_inserts_of_one_explicit_id_collide_cleanly(eq: EntroQ) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def insert(task_id: uuid.UUID, start: threading.Barrier) -> None:
        client = EntroQ(eq.backend)
        try:
            start.wait()
            client.modify(entroq.inserting_into("q", id=task_id))
            result = "inserted"
        except entroq.DependencyError as error:
            result = "collided" if error.inserts == [entroq.TaskID(task_id, 0)] else repr(error)
        except Exception as error:  # an escaped IntegrityError would land here
            result = repr(error)
        finally:
            eq.backend.release_thread()
        with lock:
            outcomes.append(result)

    rounds = 20
    for _ in range(rounds):
        task_id, start = uuid.uuid4(), threading.Barrier(2)
        threads = [threading.Thread(target=insert, args=(task_id, start)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert sorted(set(outcomes)) == ["collided", "inserted"]
    assert outcomes.count("inserted") == outcomes.count("collided") == rounds
    assert len(eq.tasks("q")) == rounds


@pytest.mark.sqlite
def test_sqlite_runs_in_wal_mode() -> None:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@pytest.mark.postgres
def test_notifies_once_per_queue_per_transaction(eq: EntroQ) -> None:
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        def received() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=0.5)]

        eq.modify(
            *(entroq.inserting_into("a") for _ in range(5)),
            *(entroq.inserting_into("b", arrival_in=60) for _ in range(3)),
        )
        assert sorted(received()) == ["a", "b"]

        claimed = eq.try_claim("a", duration=60)
        assert claimed is not None
        assert received() == [], "a claim makes nothing available"
        renewed = eq.renew_for(claimed, 120)
        assert received() == [], "a renewal makes nothing available sooner"
        eq.modify(renewed.as_change(queue="c", arrival_in=0))
        [moved] = eq.tasks("c")
        assert received() == ["c"], "a released task is news in its new queue"
        eq.modify(moved.as_deletion())
        assert received() == [], "a deletion makes nothing available"


@pytest.mark.postgres
def test_a_blocking_claim_in_another_process_wakes_on_insert(eq: EntroQ) -> None:
    waiter = start_python(
        "from queues import entroq\n"
        "import sys, time\n"
        "eq = entroq.EntroQ()\n"
        "eq.backend.subscribe(['wake']).__enter__()  # listen before saying ready\n"
        "print('ready', flush=True)\n"
        "task = eq.claim('wake', poll_time=30, timeout=20)\n"
        "print(time.monotonic(), task.value.decode(), flush=True)\n"
    )
    try:
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready", waiter.stderr
        time.sleep(0.5)  # the waiter has found the queue empty and sleeps
        inserted_at = time.monotonic()
        eq.modify(entroq.inserting_into("wake", value=b"hello"))
        out, err = waiter.communicate(timeout=20)
    finally:
        waiter.kill()
    woke_at, value = out.split()
    assert value == "hello", err
    assert float(woke_at) - inserted_at < 1.0


@pytest.mark.postgres
def test_time_is_the_database_clock(eq: EntroQ) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (before,) = cursor.fetchone()
    assert before <= eq.time()


@pytest.mark.sqlite
def test_sqlite_needs_immediate_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {})
    with pytest.raises(ImproperlyConfigured, match="IMMEDIATE"):
        EntroQ(entroq.DjangoBackend()).try_claim("q")


def test_the_model_reads_what_the_backend_writes(eq: EntroQ) -> None:
    from queues.models import Task

    explicit = uuid.uuid4()
    [task], _ = eq.modify(entroq.inserting_into("m", value=b"\x00\xff", id=explicit))
    row = Task.objects.get(id=explicit)

    assert (row.queue, bytes(row.value), row.version) == ("m", b"\x00\xff", 0)
    assert (row.at, row.created, row.claimant) == (task.at, task.created, eq.id)
