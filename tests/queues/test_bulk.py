"""Bulk runs: every matching task, in chunks, in the background, resumable."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from queues import bulk
from queues.entroq import (
    EntroQ,
    ErrorTaskValue,
    Task,
    TaskData,
    inserting,
    inserting_into,
    new_modification,
)
from queues.entroq.kinds import error_kind
from queues.models import AuditEntry, BulkRun
from tests.helpers import start_manage

pytestmark = pytest.mark.django_db(transaction=True)


def failures(eq: EntroQ, source: str, count: int) -> list[Task]:
    """Insert ``count`` error-queue tasks of ``source``; return the originals."""
    originals, _ = eq.modify(inserting(*[TaskData(queue=source) for _ in range(count)]))
    eq.modify(
        *[t.as_deletion() for t in originals],
        inserting(
            *[
                TaskData(queue=source + "/err", value=ErrorTaskValue(t, "boom").to_json())
                for t in originals
            ]
        ),
    )
    return originals


def carrier(eq: EntroQ) -> Task:
    (task,) = eq.tasks(bulk.BULK_QUEUE)
    return task


@pytest.fixture
def user() -> User:
    return User.objects.create_superuser("ops", email="")


def test_plan_counts_the_scope_and_shows_a_sample() -> None:
    eq = EntroQ()
    eq.modify(*[inserting_into("p", attempt=i % 3) for i in range(30)])
    count, sample = bulk.plan(bulk.Scope("p", min_attempt=2))
    assert count == 10
    assert len(sample) == 10
    assert all(t.attempt == 2 and t.value == b"" for t in sample)


def test_a_bulk_retry_puts_every_failure_back_and_is_logged(user: User) -> None:
    eq = EntroQ()
    originals = failures(eq, "src", 1200)

    run = bulk.start(user, "retry", bulk.Scope("src/err"))
    assert run.total == 1200
    assert carrier(eq).value == str(run.pk).encode(), "queued for a worker"
    run = bulk.execute(run)

    assert (run.status, run.done, run.conflicts) == ("done", 1200, 0)
    assert eq.tasks("src/err") == []
    assert {t.id for t in eq.tasks("src")} == {t.id for t in originals}
    details = list(AuditEntry.objects.order_by("id").values_list("action", "detail"))
    assert details[0] == ("bulk retry", f"started run #{run.pk} on 1,200 tasks (queue src/err)")
    assert details[1][1].startswith(f"run #{run.pk} finished: 1,200 done, 0 conflicts")


def test_tasks_held_mid_run_are_conflicts_and_the_rest_is_done(user: User) -> None:
    eq, worker = EntroQ(), EntroQ()
    eq.modify(*[inserting_into("mid") for _ in range(1500)])
    # Scheduled for tomorrow and held by nobody: the scope runs until then, so tasks
    # a worker claims mid-run (for a minute) are still ahead of the run.
    tomorrow = new_modification(None, inserting_into("mid", arrival_in=86400))
    eq.backend.modify(tomorrow)
    run = bulk.start(user, "delete", bulk.Scope("mid"))
    held: list[Task] = []

    def claim_some(progress: BulkRun) -> None:
        if not held:  # after the first chunk, a worker takes 7 tasks of the rest
            held.extend(t for t in (worker.try_claim("mid", duration=60) for _ in range(7)) if t)

    run = bulk.execute(run, between_chunks=claim_some)

    assert len(held) == 7
    assert (run.total, run.done, run.conflicts) == (1501, 1494, 7)
    assert sorted(t.id for t in eq.tasks("mid")) == sorted(t.id for t in held)
    assert len(run.conflict_sample) == 7
    assert "held by another claimant" in run.conflict_sample[0]["detail"]


def test_tasks_that_arrive_later_are_out_of_scope(user: User) -> None:
    eq = EntroQ()
    eq.modify(*[inserting_into("late") for _ in range(600)])
    run = bulk.start(user, "move", bulk.Scope("late"), target="elsewhere")
    newcomer = eq.modify(inserting_into("late"))[0][0]
    run = bulk.execute(run)
    assert run.done == 600
    assert [t.id for t in eq.tasks("late")] == [newcomer.id]
    assert len(eq.tasks("elsewhere")) == 600


def test_one_run_per_scope_at_a_time(user: User) -> None:
    EntroQ().modify(inserting_into("once"))
    first = bulk.start(user, "delete", bulk.Scope("once"))
    with pytest.raises(bulk.AlreadyRunning) as raised:
        bulk.start(user, "retry", bulk.Scope("once"))
    assert raised.value.run == first
    assert bulk.start(user, "delete", bulk.Scope("once", state="claimed")), "another scope"
    bulk.execute(first)
    assert bulk.start(user, "delete", bulk.Scope("once")), "once the first is over"


def test_a_cancelled_run_stops_after_its_chunk(user: User) -> None:
    EntroQ().modify(*[inserting_into("stop") for _ in range(1200)])
    run = bulk.start(user, "delete", bulk.Scope("stop"))
    run = bulk.execute(run, between_chunks=bulk.cancel)
    assert (run.status, run.done, run.position) == ("cancelled", 500, 500)


def test_bad_actions_are_refused_before_anything_is_stored(user: User) -> None:
    with pytest.raises(ValueError, match="no bulk action"):
        bulk.start(user, "explode", bulk.Scope("q"))
    with pytest.raises(ValueError, match="queue must not be empty"):
        bulk.start(user, "move", bulk.Scope("q"), target="")
    assert not BulkRun.objects.exists()


def test_a_run_resumes_after_its_worker_is_killed(user: User) -> None:
    eq = EntroQ()
    eq.modify(*[inserting_into("crash") for _ in range(3000)])
    run = bulk.start(user, "delete", bulk.Scope("crash"))
    args = ("eqworker", "--handler", "queues.bulk.work", "--queue", bulk.BULK_QUEUE)
    slow = {"ENTROQ_BULK_PAUSE_SECONDS": "0.5"}
    first = start_manage(*args, "--lease", "2", **slow)
    deadline = time.monotonic() + 60
    while BulkRun.objects.get(pk=run.pk).done < 1000 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    halfway = BulkRun.objects.get(pk=run.pk)
    assert 0 < halfway.done < 3000
    assert halfway.status == "running"

    second = start_manage(*args, **slow)  # claims the run once its lease lapses
    deadline = time.monotonic() + 120
    while BulkRun.objects.get(pk=run.pk).status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=60)

    assert second.returncode == 0, err
    run.refresh_from_db()
    assert run.status == "done"
    assert eq.tasks("crash") == []
    assert run.done + run.conflicts + run.gone == 3000, "every task accounted for once"
    assert run.gone <= 500, "at most the chunk in hand at the kill: done, but unsaved"


# The pages.


def test_the_plan_shows_the_count_and_a_sample_before_anything_happens(
    operator: Client, viewer: Client
) -> None:
    EntroQ().modify(*[inserting_into("pl", attempt=i % 2) for i in range(12)])
    form = {"queue": "pl", "attempt": "1", "action": "delete"}

    page = operator.post("/bulk/plan", form)

    assert page.status_code == 200
    assert page.context["count"] == 6
    assert len(page.context["sample"]) == 6
    assert "Delete 6 tasks?" in page.content.decode()
    assert len(EntroQ().tasks("pl")) == 12
    assert viewer.post("/bulk/plan", form).status_code == 403
    bad = operator.post("/bulk/plan", {**form, "action": "move"}, follow=True)
    assert "Cannot plan that: queue must not be empty." in bad.content.decode()


def test_a_large_run_needs_the_count_typed_then_shows_its_progress(
    operator: Client, settings: Settings
) -> None:
    settings.ENTROQ = {"BULK_TYPED_CONFIRM": 5}
    EntroQ().modify(*[inserting_into("big") for _ in range(8)])
    form = {"queue": "big", "action": "delete"}

    refused = operator.post("/bulk/start", form)
    assert refused.status_code == 400
    assert "Type 8 to confirm" in refused.content.decode()
    assert not BulkRun.objects.exists()

    started = operator.post("/bulk/start", {**form, "typed": "8"})
    run = BulkRun.objects.get()
    assert started["Location"] == f"/bulk/{run.pk}"
    page = operator.get(f"/bulk/{run.pk}").content.decode()
    assert "0 of 8 tasks" in page
    assert 'hx-trigger="every 2s"' in page, "live while it runs, as often as the overview may"

    again = operator.post("/bulk/start", {**form, "typed": "8"}, follow=True)
    assert f"Run #{run.pk} on this scope is still running." in again.content.decode()

    bulk.execute(run)
    partial = operator.get(f"/bulk/{run.pk}", headers={"HX-Request": "true", "HX-Target": "run"})
    text = partial.content.decode()
    assert text.lstrip().startswith('<section id="run"')
    assert "8 of 8 tasks" in text
    assert "hx-trigger" not in text, "a finished run stops polling"
    assert "bulk delete" in operator.get("/audit").content.decode()


def test_an_operator_stops_a_run(operator: Client) -> None:
    EntroQ().modify(inserting_into("st"))
    run = bulk.start(User.objects.get(username="operator"), "delete", bulk.Scope("st"))
    operator.post(f"/bulk/{run.pk}/cancel")
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert len(EntroQ().tasks("st")) == 1
    assert "cancelled by operator" in AuditEntry.objects.order_by("-id")[0].detail


def test_a_live_queue_loses_only_the_tasks_in_scope(user: User) -> None:
    eq, worker = EntroQ(), EntroQ()
    eq.modify(*[inserting_into("live") for _ in range(10)])
    held = worker.try_claim("live", duration=60)
    assert held is not None
    run = bulk.start(user, "delete", bulk.Scope("live"))
    newcomers, _ = eq.modify(*[inserting_into("live") for _ in range(5)])

    run = bulk.execute(run)

    assert (run.total, run.done, run.conflicts) == (10, 9, 1)
    assert sorted(t.id for t in eq.tasks("live")) == sorted([held.id, *(t.id for t in newcomers)])


def test_a_retry_of_a_whole_queue_acts_once_on_each_task(user: User) -> None:
    eq = EntroQ()
    eq.modify(*[inserting_into("loop") for _ in range(700)])
    eq.backend.modify(new_modification(None, inserting_into("loop", arrival_in=86400 * 365)))
    run = bulk.execute(bulk.start(user, "retry", bulk.Scope("loop")))
    assert (run.status, run.total, run.done) == ("done", 701, 701)


def test_the_group_of_empty_errors_is_not_the_whole_queue(user: User) -> None:
    eq = EntroQ()
    eq.modify(*[inserting_into("e/err", err="boom 1234") for _ in range(5)])
    eq.modify(*[inserting_into("e/err", err=" ") for _ in range(3)])
    eq.modify(inserting_into("e", err=" "))
    assert bulk.plan(bulk.Scope("e/err", error_group=""))[0] == 3
    assert bulk.plan(bulk.Scope("e/err", error_group="boom <n>"))[0] == 5
    assert bulk.plan(bulk.Scope("e/err"))[0] == 8
    # Outside error queues, as on the triage page, tasks without an error are no group.
    assert bulk.plan(bulk.Scope("e", error_group=""))[0] == 0


def test_a_long_non_ascii_group_fits_the_scope_key(user: User) -> None:
    error = "ошибка " * 80
    EntroQ().modify(inserting_into("ru", err=error))
    run = bulk.start(user, "delete", bulk.Scope("ru", error_group=error_kind(error)))
    assert bulk.execute(run).done == 1


def test_two_executors_never_both_move_a_run_on(user: User) -> None:
    EntroQ().modify(*[inserting_into("two") for _ in range(1200)])
    run = bulk.start(user, "delete", bulk.Scope("two"))
    rival = BulkRun.objects.get(pk=run.pk)

    def race(progress: BulkRun) -> None:
        if progress.position == 500:  # the other executor saves a chunk first
            BulkRun.objects.filter(pk=rival.pk).update(position=1000)

    first = bulk.execute(run, between_chunks=race)
    assert first.position == 1000, "it stopped instead of saving over the other's progress"


def test_a_run_reads_its_id_list_once_not_once_a_chunk(user: User) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    EntroQ().modify(*[inserting_into("ids") for _ in range(1300)])
    run = bulk.start(user, "delete", bulk.Scope("ids"))

    with CaptureQueriesContext(connection) as queries:
        run = bulk.execute(run)

    assert (run.status, run.done) == ("done", 1300)
    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"ids"' in q["sql"]]
    assert len(reads) == 1, reads
