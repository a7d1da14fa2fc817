"""Live workers (``queues.liveness``): announcing, beating, staleness, pruning, stops,
and the beating thread, on the database."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queues import entroq, liveness
from queues.entroq import EntroQ
from queues.liveness import Announcement, Pulse
from queues.models import AuditEntry, WorkerProcess
from tests.helpers import start_manage

pytestmark = pytest.mark.django_db


def worker(*queues: str, **more: object) -> Announcement:
    return Announcement.of_this_process("database", queues or ("jobs",), **more)


def age(worker_id: uuid.UUID, seconds: float) -> None:
    """Make the worker's last beat ``seconds`` old."""
    then = timezone.now() - timedelta(seconds=seconds)
    WorkerProcess.objects.filter(id=worker_id).update(last_beat=then)


def test_announce_records_the_process_and_a_beat_updates_it() -> None:
    me = worker("jobs", "mail", concurrency=4, prefetch=10, handler="app.work")
    liveness.announce(me)
    row = WorkerProcess.objects.get()
    assert (row.id, row.kind, row.queues, row.concurrency, row.prefetch) == (
        me.id,
        "database",
        ["jobs", "mail"],
        4,
        10,
    )
    assert row.pid > 0
    assert row.host
    assert row.version
    assert row.handler == "app.work"

    held = [uuid.uuid4() for _ in range(3)]
    assert liveness.beat(me, Pulse.of(7, 2, held)) is False
    row.refresh_from_db()
    assert (row.done, row.failed, row.holding, row.held) == (7, 2, 3, [str(i) for i in held])
    assert row.last_beat >= row.started


def test_a_beat_is_one_small_statement() -> None:
    me = worker()
    liveness.announce(me)
    with CaptureQueriesContext(connection) as queries:
        liveness.beat(me, Pulse.of(1, 0, [uuid.uuid4()]))
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert queries[0]["sql"].startswith("UPDATE")


def test_held_ids_are_capped_and_counted() -> None:
    pulse = Pulse.of(0, 0, (uuid.uuid4() for _ in range(liveness.MAX_HELD_IDS + 50)))
    assert pulse.holding == liveness.MAX_HELD_IDS + 50
    assert len(pulse.held) == liveness.MAX_HELD_IDS


def test_a_stop_request_reaches_the_worker_at_its_next_beat_and_is_audited(
    django_user_model: type[User],
) -> None:
    me = worker()
    liveness.announce(me)
    operator = django_user_model.objects.create_user("op")
    row = WorkerProcess.objects.get()

    said = liveness.request_stop(row, timezone.now(), user=operator)

    assert "asked worker" in said
    assert liveness.beat(me, Pulse.of(3, 0, [])) is True
    row.refresh_from_db()
    assert row.done == 3, "the beat that carries the stop still records the counts"
    assert row.stop_requested_by == "op"
    assert liveness.state(row, timezone.now()) == liveness.STOPPING
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.outcome, entry.queue) == (
        liveness.STOP_WORKER,
        "op",
        "done",
        "jobs",
    )


def test_a_worker_that_exited_cannot_be_stopped_and_says_so() -> None:
    me = worker()
    liveness.announce(me)
    liveness.exited(me, Pulse.of(5, 0, []))
    row = WorkerProcess.objects.get()
    assert liveness.state(row, timezone.now()) == liveness.EXITED
    said = liveness.request_stop(row, timezone.now(), by="root (command line)")
    assert "already exited" in said
    assert AuditEntry.objects.get().outcome == "refused"


def test_a_silent_worker_is_stale_after_three_beats_and_pruned_after_an_hour() -> None:
    alive, silent, gone = worker(), worker(), worker()
    for each in (alive, silent, gone):
        liveness.announce(each)
    age(silent.id, 16)
    age(gone.id, liveness.PRUNE_AFTER.total_seconds() + 1)
    now = timezone.now()

    states = {s.row.id: s.state for s in liveness.workers(now)}
    assert states == {alive.id: "alive", silent.id: "stale", gone.id: "stale"}
    assert next(s.row.id for s in liveness.workers(now)) == alive.id, "the live first"

    assert liveness.prune() == 1
    assert set(WorkerProcess.objects.values_list("id", flat=True)) == {alive.id, silent.id}


def test_a_slow_beating_worker_is_judged_by_its_own_rhythm() -> None:
    slow = worker(beat_seconds=60.0)
    liveness.announce(slow)
    age(slow.id, 100)
    assert liveness.state(WorkerProcess.objects.get(), timezone.now()) == liveness.ALIVE


def test_a_pruned_worker_announces_itself_again_at_its_next_beat() -> None:
    me = worker()
    liveness.announce(me)
    WorkerProcess.objects.all().delete()
    assert liveness.beat(me, Pulse.of(9, 1, [])) is False
    row = WorkerProcess.objects.get()
    assert (row.id, row.done, row.failed) == (me.id, 9, 1)


def test_consumers_counts_the_live_workers_of_a_queue() -> None:
    a, b, stale, done = worker("jobs"), worker("jobs", "mail"), worker("jobs"), worker("jobs")
    for each in (a, b, stale, done):
        liveness.announce(each)
    age(stale.id, 60)
    liveness.exited(done, Pulse())
    now = timezone.now()
    assert liveness.consumers("jobs", now) == 2
    assert liveness.consumers("mail", now) == 1
    assert liveness.consumers("other", now) == 0
    assert [s.row.id for s in liveness.workers(now, queue="mail")] == [b.id]


def test_a_worker_on_a_prefix_consumes_each_queue_under_it() -> None:
    billing, everything = worker("billing/*"), worker("*")
    for each in (billing, everything):
        liveness.announce(each)
    now = timezone.now()

    assert liveness.consumers("billing/invoices", now) == 2
    assert liveness.consumers("mail", now) == 1
    assert {s.row.id for s in liveness.workers(now, queue="billing/x")} == {
        billing.id,
        everything.id,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("queues", ()),
        ("queues", ("x",) * (liveness.MAX_QUEUES + 1)),
        ("queues", ("",)),
        ("host", "h" * 256),
        ("host", ""),
        ("pid", -1),
        ("concurrency", 0),
        ("beat_seconds", 0.1),
        ("kind", "martian"),
    ],
)
def test_announcements_out_of_bounds_are_refused(field: str, value: object) -> None:
    bad = worker()
    bad = Announcement(**{**bad.__dict__, field: value})
    with pytest.raises((ValueError, TypeError)):
        liveness.announce(bad)
    assert not WorkerProcess.objects.exists()


def test_find_takes_an_id_or_its_start() -> None:
    me = worker()
    liveness.announce(me)
    assert liveness.find(str(me.id)).id == me.id  # type: ignore[union-attr]
    assert liveness.find(str(me.id)[:8]).id == me.id  # type: ignore[union-attr]
    assert liveness.find(str(me.id)[:7]) is None, "too short to be sure"
    assert liveness.find("'; drop table") is None


class Recorder:
    """Beats kept in memory, to watch the heart's rhythm."""

    def __init__(self, stop_after: int = 0) -> None:
        self.sent: list[str] = []
        self.stop_after = stop_after

    def announce(self, worker: Announcement, pulse: Pulse) -> None:
        self.sent.append("announce")

    def beat(self, worker: Announcement, pulse: Pulse) -> bool:
        self.sent.append("beat")
        return bool(self.stop_after) and self.sent.count("beat") >= self.stop_after

    def exited(self, worker: Announcement, pulse: Pulse) -> None:
        self.sent.append("exited")

    def release(self) -> None:
        pass


def test_the_heart_beats_and_sets_stop_when_asked() -> None:
    stop = threading.Event()
    beats = Recorder(stop_after=2)
    heart = liveness.Heart(worker(beat_seconds=1.0), Pulse, stop, beats)
    heart.start()
    assert stop.wait(10), "the second beat carried a stop request"
    heart.close()
    assert beats.sent == ["announce", "beat", "beat", "exited"]


def test_a_failing_beat_is_logged_and_never_ends_the_heart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(Recorder):
        def beat(self, worker: Announcement, pulse: Pulse) -> bool:
            super().beat(worker, pulse)
            raise OSError("network down")

    stop = threading.Event()
    beats = Failing()
    heart = liveness.Heart(worker(beat_seconds=1.0), Pulse, stop, beats)
    heart.start()
    threading.Event().wait(2.5)
    heart.close()
    assert beats.sent.count("beat") >= 2
    assert beats.sent[-1] == "exited"
    assert "beat not recorded (network down)" in caplog.text
    assert not stop.is_set()


def test_eq_workers_lists_them_and_stop_worker_asks_one_to_stop() -> None:
    me = worker("jobs")
    liveness.announce(me)
    out = StringIO()
    call_command("eq", "workers", stdout=out)
    assert str(me.id) in out.getvalue()
    assert "alive" in out.getvalue()

    out = StringIO()
    call_command("eq", "stop-worker", str(me.id)[:8], stdout=out)
    assert "asked worker" in out.getvalue()
    assert WorkerProcess.objects.get().stop_requested is not None
    assert "(manage.py eq)" in AuditEntry.objects.get().username

    out = StringIO()
    call_command("eq", "workers", "--json", "--queue", "jobs", stdout=out)
    assert '"state": "stopping"' in out.getvalue()
    with pytest.raises(CommandError, match="no worker"):
        call_command("eq", "stop-worker", "0123456789")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_real_worker_beats_shows_what_it_holds_and_stops_when_asked(tmp_path: Path) -> None:
    eq = EntroQ(entroq.DjangoBackend())
    [task], _ = eq.modify(entroq.inserting_into("jobs"))
    process = start_manage(
        "eqworker",
        "--queue",
        "jobs",
        "--handler",
        "tests.handlers.slow",
        "--beat",
        "1",
        "--concurrency",
        "2",
        EQ_TEST_LOG=str(tmp_path / "log"),
        EQ_TEST_SLEEP="4",
    )
    try:
        row = until(lambda: WorkerProcess.objects.filter(holding=1).first())
        assert (row.pid, row.kind, row.queues, row.concurrency) == (
            process.pid,
            "database",
            ["jobs"],
            2,
        )
        assert row.held == [str(task.id)]

        liveness.request_stop(row, eq.time(), by="test")
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, err
    assert "an operator asked this worker to stop" in err
    row.refresh_from_db()
    assert (row.done, row.failed, row.holding) == (1, 0, 0), "it finished the task in hand"
    assert row.exited is not None
    assert eq.tasks("jobs") == []


def until(find: Callable[[], WorkerProcess | None], timeout: float = 30) -> WorkerProcess:
    deadline = time.monotonic() + timeout
    while (found := find()) is None:
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)
    return found
