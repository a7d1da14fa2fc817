"""What only the Django backend does: lean SQL, PostgreSQL notifications, SQLite locking."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

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
    assert successes, "some modifications went through"
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
        assert waiter.stderr is not None
        assert waiter.stdout.readline().strip() == "ready", waiter.stderr.read()
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
def test_every_now_is_the_database_clock(eq: EntroQ) -> None:
    # Shadow the server's clock in this session: an hour behind the client's.
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA IF NOT EXISTS skewed")
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skewed.statement_timestamp() RETURNS timestamptz "
            "AS $$ SELECT pg_catalog.statement_timestamp() - interval '1 hour' $$ "
            "LANGUAGE sql STABLE"
        )
        cursor.execute("SET search_path = skewed, pg_catalog, public")
    try:
        local = datetime.now(UTC)
        assert timedelta(minutes=59) < local - eq.time() < timedelta(minutes=61)

        [now_task, local_task], _ = eq.modify(
            entroq.inserting_into("q"), entroq.inserting_into("q", at=local)
        )
        assert local - now_task.at > timedelta(minutes=59), "inserted at the database's now"
        claimed = eq.try_claim("q", duration=60)
        assert claimed is not None
        assert claimed.id == now_task.id, "a task due by the client's clock is not yet due"
        assert claimed.at < local, "the lease runs from the database's now"
        assert eq.try_claim("q") is None
        stat = eq.queue_stats()["q"]
        assert (stat.available, stat.claimed) == (0, 2)
        released = eq.modify(claimed.as_change())[1][0]
        assert local - released.at > timedelta(minutes=59)
        arrival = eq.backend.seconds_until_arrival(["q"])
        assert arrival is not None
        assert arrival < 0, "the released task is due by the database's clock"
        assert local_task.at == local
    finally:
        connection.close()  # the next session has the real clock again


def test_a_claim_inside_a_long_transaction_uses_the_current_time(eq: EntroQ) -> None:
    [task], _ = eq.modify(entroq.inserting_into("q", arrival_in=0.5))

    with transaction.atomic():
        eq.queues()  # the transaction has begun, before the task is due
        time.sleep(0.8)
        claimed = eq.try_claim("q", duration=30)
        remaining = None if claimed is None else (claimed.at - eq.time()).total_seconds()

    assert claimed is not None
    assert claimed.id == task.id
    assert remaining is not None
    assert remaining > 29, "the lease starts now, not when the transaction began"


@pytest.mark.postgres
def test_racing_inserts_of_one_id_inside_a_transaction_collide_cleanly(eq: EntroQ) -> None:
    task_id = uuid.uuid4()
    inserted = threading.Event()
    results: list[str] = []

    def insert_and_hold() -> None:
        try:
            with transaction.atomic():
                EntroQ(eq.backend).modify(entroq.inserting_into("q", id=task_id))
                inserted.set()
                time.sleep(0.5)  # the other insert waits for this transaction
        finally:
            eq.backend.release_thread()

    holder = threading.Thread(target=insert_and_hold)
    holder.start()
    inserted.wait(10)
    with transaction.atomic():
        try:
            eq.modify(entroq.inserting_into("q", id=task_id))
            results.append("inserted")
        except entroq.DependencyError as error:
            results.append(f"collided {error.inserts}")
    holder.join(10)

    assert results == [f"collided {[entroq.TaskID(task_id, 0)]}"]
    assert [t.id for t in eq.tasks("q")] == [task_id]


def test_do_with_renew_refuses_to_run_inside_a_transaction(eq: EntroQ) -> None:
    eq.modify(entroq.inserting_into("q"))
    claimed = eq.try_claim("q")
    assert claimed is not None

    with transaction.atomic(), pytest.raises(ValueError, match="inside a database transaction"):
        eq.do_with_renew(claimed, 10, lambda: None)


def test_long_id_lists_fit_in_one_query(eq: EntroQ) -> None:
    [task], _ = eq.modify(entroq.inserting_into("q"))
    ids = [uuid.uuid4() for _ in range(40_000)] + [task.id]  # over SQLite's 32,766 parameters

    assert eq.tasks(ids=ids) == [task]
    assert eq.queues(match_exact=[f"q{i}" for i in range(40_000)] + ["q"]) == {"q": 1}


def test_a_renewal_keeps_the_value_without_sending_it(eq: EntroQ) -> None:
    eq.modify(entroq.inserting_into("q", value=b"large value"))
    claimed = eq.try_claim("q")
    assert claimed is not None

    with CaptureQueriesContext(connection) as renewal:
        renewed = eq.renew_for(claimed, 60)

    assert renewed.value == b"large value"
    assert eq.tasks("q")[0].value == b"large value"
    assert not any("value =" in q["sql"] for q in renewal.captured_queries)


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


def test_each_error_is_stored_with_its_kind(eq: EntroQ) -> None:
    from queues.models import Task

    [task], _ = eq.modify(entroq.inserting_into("q/err", err="card 4242 declined"))
    inserted = Task.objects.get(id=task.id).err_kind
    [changed] = eq.modify(entroq.changing(task, err="timeout after 3 s (request 90210)"))[1]
    after_change = Task.objects.get(id=task.id).err_kind
    eq.modify(entroq.changing(changed, err=""))

    assert inserted == "card <n> declined"
    assert after_change == "timeout after 3 s (request <n>)"
    assert Task.objects.get(id=task.id).err_kind == ""


# Statements that run about ``seconds`` on each database.
def slow_statement(seconds: float) -> str:
    if connection.vendor == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    rows = int(seconds * 3_000_000)  # a few million a second on these machines
    return (
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
        "SELECT count(*) FROM n"
    )


def run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def test_a_statement_timeout_stops_long_statements_and_is_put_back() -> None:
    from django.db import OperationalError

    from queues.entroq.django_backend import is_timeout, statement_timeout

    with statement_timeout(30):
        with statement_timeout(0.1), pytest.raises(OperationalError) as stopped:
            run(slow_statement(20))
        run(slow_statement(0.3))  # the outer timeout is back
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW statement_timeout")
                assert cursor.fetchone()[0] == "30s"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # the connection is still good

    assert is_timeout(stopped.value)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "0"


def test_tasks_leaving_a_queue_are_counted_when_their_transaction_commits(eq: EntroQ) -> None:
    from queues.models import Departures

    backend = eq.backend
    assert isinstance(backend, entroq.DjangoBackend)
    backend.departures.take()  # what earlier tests in this process counted
    tasks, _ = eq.modify(
        *[entroq.inserting_into("a") for _ in range(4)], entroq.inserting_into("b")
    )
    a1, a2, a3, a4, b = tasks
    eq.modify(a1.as_deletion())  # the one-statement path
    eq.modify(a2.as_deletion(), entroq.changing(a3, queue="a/err"))  # a delete and a move
    eq.modify(entroq.changing(b, value=b"new"))  # a change in place is no departure
    with pytest.raises(entroq.DependencyError):
        eq.modify(a1.as_deletion(), a4.as_deletion())
    with transaction.atomic():
        eq.modify(a4.as_deletion())
        transaction.set_rollback(True)
    backend.write_departures()

    assert list(Departures.objects.values_list("queue", "count")) == [("a", 3)]
    assert Departures.objects.get().minute.second == 0


def test_departure_counts_are_written_every_so_often(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queues.entroq import departures
    from queues.models import Departures

    assert isinstance(eq.backend, entroq.DjangoBackend)
    eq.backend.departures.take()
    tasks, _ = eq.modify(*[entroq.inserting_into("w") for _ in range(2)])
    monkeypatch.setattr(departures, "FLUSH_SECONDS", 0.0)
    eq.modify(tasks[0].as_deletion())
    eq.modify(tasks[1].as_deletion())

    assert sum(Departures.objects.filter(queue="w").values_list("count", flat=True)) == 2
