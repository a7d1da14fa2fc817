"""What only the Django backend does: lean SQL, PostgreSQL notifications, SQLite locking."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.test.utils import CaptureQueriesContext

from queues import entroq
from queues.entroq import EntroQ
from queues.entroq.django_backend import NOTIFY_CHANNEL
from tests.helpers import database_url, start_python

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


def test_lone_changes_of_a_batch_are_a_statement_each(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("q") for _ in range(5)))
    tasks = eq.try_claim_many("q", limit=5, duration=60)

    with CaptureQueriesContext(connection) as applied:
        outcomes = eq.modify_each(*([t.as_change(queue="done")] for t in tasks))

    assert all(isinstance(o, tuple) for o in outcomes)
    assert eq.queues() == {"done": 5}
    if connection.vendor == "postgresql":  # one transaction, no reads before the writes
        statements = [q["sql"] for q in applied.captured_queries]
        assert (statements[0], len(statements), statements[-1]) == ("BEGIN", 7, "COMMIT")


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


def test_a_lone_insert_is_one_statement_and_a_taken_id_still_collides(eq: EntroQ) -> None:
    from queues.models import Task as TaskRow

    explicit = uuid.uuid4()
    with CaptureQueriesContext(connection) as insert:
        [task], _ = eq.modify(entroq.inserting_into("q", id=explicit, err="card 4242 declined"))
    [later], _ = eq.modify(entroq.inserting_into("later", arrival_in=60))

    assert len(insert) == 1, [q["sql"] for q in insert.captured_queries]
    assert eq.tasks("q") == [task]
    assert (task.id, task.version, task.claimant, task.at) == (explicit, 0, eq.id, task.created)
    assert TaskRow.objects.get(id=explicit).err_kind == "card <n> declined"
    assert eq.tasks("later") == [later]
    assert later.at - later.created == timedelta(seconds=60), "from the store's clock"
    with pytest.raises(entroq.DependencyError) as collided:
        eq.modify(entroq.inserting_into("other", id=explicit))
    assert collided.value.inserts == [entroq.TaskID(explicit, 0)]
    assert not collided.value.has_missing()
    assert not collided.value.has_claims()
    with transaction.atomic():  # the caller's transaction goes on after a collision
        with pytest.raises(entroq.DependencyError):
            eq.modify(entroq.inserting_into("other", id=explicit))
        eq.modify(entroq.inserting_into("other"))
    assert eq.modify(entroq.inserting_into("q", id=explicit, skip_colliding=True)) == ([], [])
    assert eq.queues() == {"q": 1, "later": 1, "other": 1}


def test_a_lone_insert_wakes_waiting_claims_when_it_commits(eq: EntroQ) -> None:
    with eq.backend.subscribe(["wake"]) as woken:
        with transaction.atomic():
            eq.modify(entroq.inserting_into("wake"))
            assert not woken.wait(0.3), "woken before the insert committed"
        assert woken.wait(5)
        woken.clear()
        with transaction.atomic():
            eq.modify(entroq.inserting_into("wake"))
            transaction.set_rollback(True)
        assert not woken.wait(0.3), "woken by an insert that rolled back"
    assert eq.queues() == {"wake": 1}


@pytest.mark.postgres  # SQLite's claims would wait for our write lock, not for word
def test_a_claim_waiting_in_another_thread_wakes_on_a_lone_insert(eq: EntroQ) -> None:
    woke: list[tuple[float, bytes]] = []

    def wait() -> None:
        try:
            task = EntroQ(eq.backend).claim("wake", poll_time=30, timeout=20)
            woke.append((time.monotonic(), task.value))
        finally:
            eq.backend.release_thread()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)  # the waiter has found the queue empty and sleeps
    with transaction.atomic():
        eq.modify(entroq.inserting_into("wake", value=b"hello"))
        time.sleep(0.3)
        assert woke == [], "an uncommitted insert is seen by no one"
    committed = time.monotonic()
    waiter.join(25)

    [(woke_at, value)] = woke
    assert value == b"hello"
    assert woke_at - committed < 1.0


def test_a_lone_change_is_one_statement_and_a_refused_one_reports_why(eq: EntroQ) -> None:
    from queues.models import Task as TaskRow

    backend = eq.backend
    assert isinstance(backend, entroq.DjangoBackend)
    [task, other], _ = eq.modify(entroq.inserting_into("q"), entroq.inserting_into("h"))
    claimed = eq.try_claim("q", duration=60)
    assert claimed is not None
    backend.departures.take()  # what earlier tests in this process counted

    with CaptureQueriesContext(connection) as change:
        [moved] = eq.modify(claimed.as_change(queue="q/done", value=b"result"))[1]

    if connection.vendor == "postgresql":  # SQLite takes the full path
        assert len(change) == 1, [q["sql"] for q in change.captured_queries]
    assert (moved.queue, moved.value, moved.version) == ("q/done", b"result", claimed.version + 1)
    assert moved.claimant is None, "a change arriving now releases the task"
    assert eq.tasks("q/done") == [moved]
    assert [queue for queue, _, _ in backend.departures.take()] == ["q"]
    with pytest.raises(entroq.DependencyError) as stale:
        eq.modify(claimed.as_change(value=b"again"))
    assert stale.value.changes == [claimed.id_version()]
    held = eq.try_claim("h", duration=60)
    assert held is not None
    with pytest.raises(entroq.DependencyError) as refused:
        EntroQ(backend).modify(held.as_change(value=b"x"))
    assert refused.value.claims == [held.id_version()]
    [renewed] = eq.modify(held.as_change(arrival_in=30, err="card 4242 declined"))[1]
    assert (renewed.claimant, renewed.err, renewed.value) == (eq.id, "card 4242 declined", b"")
    assert renewed.at > eq.time(), "a change into the future keeps the claim"
    assert TaskRow.objects.get(id=other.id).err_kind == "card <n> declined"
    with transaction.atomic():
        eq.modify(renewed.as_change(queue="elsewhere"))
        transaction.set_rollback(True)
    assert eq.tasks("h") == [renewed], "undone by the caller's rollback"
    assert backend.departures.take() == [], "nor counted as a departure"
    eq.modify(renewed.as_deletion())
    with pytest.raises(entroq.DependencyError) as missing:
        eq.modify(renewed.as_change())
    assert missing.value.changes == [renewed.id_version()]
    assert task.id == moved.id


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


def _drop_this_threads_connection() -> None:
    """End this thread's database session from the server's side, as a restart would."""
    pid = connection.connection.info.backend_pid
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits until it ends


@pytest.mark.postgres
def test_a_dropped_connection_is_replaced_on_the_next_call(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("q") for _ in range(3)))
    seen: list[str] = []

    def in_a_thread() -> None:
        client = EntroQ(eq.backend)
        try:
            calls: list[tuple[str, Callable[[], object]]] = [
                ("claim", lambda: client.try_claim("q")),
                ("list", lambda: client.tasks("q")),
                ("modify", lambda: client.modify(entroq.inserting_into("q"))),
                ("delete", lambda: client.modify(client.tasks("q")[0].as_deletion())),
            ]
            for name, call in calls:
                call()  # on a connection of this thread's own
                _drop_this_threads_connection()
                with pytest.raises(entroq.BackendUnavailable):
                    call()  # found dropped: closed, and said so
                call()  # connected anew
                seen.append(name)
        finally:
            eq.backend.release_thread()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(60)

    assert seen == ["claim", "list", "modify", "delete"]


@pytest.mark.postgres
def test_a_worker_goes_on_after_its_connection_is_dropped(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eq.modify(*(entroq.inserting_into("q", value=str(i).encode()) for i in range(3)))
    monkeypatch.setattr("queues.entroq.worker.OUTAGE_BACKOFF", 0.1)
    done: list[bytes] = []

    def work(task: entroq.Task) -> list[entroq.ModifyArg]:
        done.append(task.value)
        if len(done) == 1:
            _drop_this_threads_connection()  # so finishing this task fails
        return [task.as_deletion()]

    def run() -> None:
        try:
            # Four claims: the first task comes back once its 1 s lease lapses.
            EntroQ(eq.backend).new_worker("q", lease=1).run(work, max_tasks=4)
        finally:
            eq.backend.release_thread()

    with caplog.at_level("INFO", logger="queues.entroq.worker"):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(60)

    assert eq.queues() == {}
    assert sorted(done) == sorted([b"0", b"1", b"2", done[0]]), "the first task ran twice"
    assert "outcome not stored, redelivered when its lease lapses" in caplog.text


@pytest.mark.postgres
def test_crossed_changes_and_dependencies_do_not_deadlock(eq: EntroQ) -> None:
    """Two modifications inside callers' transactions, each changing the task the other
    depends on, wait for each other instead of deadlocking (PostgreSQL's 40P01)."""
    [x, y], _ = eq.modify(entroq.inserting_into("q"), entroq.inserting_into("q"))
    both_locked = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def pause_after_first_lock(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        result = execute(sql, params, many, context)
        if sql.rstrip().endswith(("FOR UPDATE", "FOR SHARE")):
            # Let the other modification take its first lock too, if it can.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_locked.wait(2)
        return result

    def modify(name: str, changed: entroq.Task, depended: entroq.Task) -> None:
        client = EntroQ(eq.backend)
        try:
            with (
                connection.execute_wrapper(pause_after_first_lock),
                transaction.atomic(),
            ):
                client.modify(changed.as_change(value=b"new"), depended.as_dependency())
            outcomes[name] = "done"
        except entroq.DependencyError:
            outcomes[name] = "stale"  # the other went first and changed what this needs
        except Exception as error:
            outcomes[name] = repr(error)
        finally:
            eq.backend.release_thread()

    threads = [
        threading.Thread(target=modify, args=("a", x, y)),
        threading.Thread(target=modify, args=("b", y, x)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes.values()) == ["done", "stale"], outcomes


@pytest.mark.postgres
def test_a_full_modification_locks_rows_through_select_for_update(eq: EntroQ) -> None:
    [task, config], _ = eq.modify(entroq.inserting_into("q"), entroq.inserting_into("config"))

    with CaptureQueriesContext(connection) as modification:
        eq.modify(task.as_change(value=b"x"), config.as_dependency())

    statements = [q["sql"] for q in modification.captured_queries]
    assert any(
        s.startswith('SELECT "entroq_task"."id"') and s.endswith("FOR UPDATE") for s in statements
    )
    assert any(s.endswith("FOR SHARE") for s in statements), "dependencies are only shared"


@pytest.mark.sqlite
def test_a_busy_database_fails_a_claim_after_one_busy_timeout(eq: EntroQ) -> None:
    """SQLite has waited out its busy timeout before it says "locked": trying again
    would wait it out again, eight times over."""
    import sqlite3

    eq.modify(entroq.inserting_into("q"))
    timeout = 0.3
    connection.close()
    connection.settings_dict["OPTIONS"] = {
        **connection.settings_dict["OPTIONS"],
        "timeout": timeout,
    }
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing, for long
        started = time.monotonic()
        with pytest.raises(Exception, match="locked"):
            eq.try_claim("q")
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        connection.close()
        connection.settings_dict["OPTIONS"] = {**connection.settings_dict["OPTIONS"], "timeout": 30}

    assert waited < 4 * timeout, f"waited {waited:.1f} s for a busy timeout of {timeout} s"
    assert eq.try_claim("q") is not None, "claims go on once the writer is done"


def test_a_prefix_is_a_range_of_code_points() -> None:
    from queues.entroq.django_backend import prefix_range

    assert prefix_range("billing/") == ("billing/", "billing0")
    assert prefix_range("a\U0010ffff") == ("a\U0010ffff", "b")
    assert prefix_range("\U0010ffff") == ("\U0010ffff", None)
    assert prefix_range("a\ud7ff") == ("a\ud7ff", "a\ue000")


@pytest.mark.postgres
def test_prefix_stats_read_a_range_of_the_index(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into(f"q{i % 50}/x") for i in range(200)))

    with CaptureQueriesContext(connection) as stats:
        found = eq.queue_stats(match_prefix="q1/")
    assert found == {"q1/x": eq.queue_stats()["q1/x"]}

    [sql] = [q["sql"] for q in stats.captured_queries if "GROUP BY queue" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a small table would be read whole
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "Index Cond: (((queue)::text >= 'q1/'::text) AND ((queue)::text < 'q10'::text))" in plan


@pytest.mark.postgres
def test_under_a_language_s_collation_a_prefix_claim_probes_queues_not_rows(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queues.entroq.django_backend import postgresql

    # As on a database whose queue column sorts by a language's rules: no ranges.
    monkeypatch.setitem(postgresql._collations, DEFAULT_DB_ALIAS, False)
    eq.modify(*(entroq.inserting_into(q) for q in ["jobs/a", "jobs/b", "jobs/b/err", "jobsx", "a"]))

    claimed = eq.try_claim_many("jobs/*", limit=10, duration=60)

    assert sorted(t.queue for t in claimed) == ["jobs/a", "jobs/b"]
    sql = postgresql.claim_statement(0, 10, (None,))
    assert "DISTINCT" not in sql, "no scan of the table's rows"
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN " + sql,
            {"lo0": "jobs/", "claimant": uuid.uuid4(), "duration": 1.0},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "Seq Scan on entroq_task" not in plan
