"""Undo: operators' deletions and moves are kept, put back, and pruned; workers' are not."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone
from pytest_django.fixtures import Settings

from queues import bulk, undo
from queues.conf import AppSettings
from queues.entroq import (
    EntroQ,
    ErrorTaskValue,
    ModifyArg,
    MoveTaskError,
    Task,
    TaskID,
    inserting_into,
    ops,
)
from queues.models import AuditEntry, BulkRun, KeptTask, Undoable
from queues.service import client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eq() -> EntroQ:
    return client()


@pytest.fixture
def user(transactional_db: None) -> User:
    return User.objects.create_user("ops")


def insert(eq: EntroQ, queue: str = "jobs", value: bytes = b"{}", **kwargs: object) -> Task:
    return eq.modify(inserting_into(queue, value=value, **kwargs))[0][0]  # type: ignore[arg-type]


def delete_kept(eq: EntroQ, tasks: list[Task]) -> Undoable:
    keeping = undo.begin(eq, "delete", username="tester")
    assert keeping is not None
    result = ops.apply_to_versions(
        keeping, [t.id_version() for t in tasks], ops.delete, values=True
    )
    assert len(result.done) == len(tasks)
    undoable = keeping.finish()
    assert undoable is not None
    return undoable


def test_a_kept_deletion_is_put_back_with_its_id_value_attempt_and_error(eq: EntroQ) -> None:
    task = insert(eq, "jobs", b'{"n": 7}', attempt=3, err="boom")
    other = insert(eq, "jobs/b", b"raw")
    undoable = delete_kept(eq, [task, other])
    assert eq.tasks(ids=[task.id, other.id]) == []
    kept = KeptTask.objects.get(task_id=task.id)
    assert (bytes(kept.value), kept.size, kept.attempt, kept.err, kept.queue) == (
        b'{"n": 7}',
        8,
        3,
        "boom",
        "jobs",
    )

    result = undo.undo(eq, undoable, username="tester")

    assert (len(result.done), result.conflicts, result.remaining) == (2, [], 0)
    [back] = eq.tasks(ids=[task.id])
    assert (back.queue, back.value, back.attempt, back.err) == ("jobs", b'{"n": 7}', 3, "boom")
    assert eq.tasks(ids=[other.id])[0].value == b"raw"
    assert result.entry is not None
    assert result.entry.action == "undo"
    assert result.entry.username == "tester"
    assert len(result.entry.tasks) == 2
    assert undo.pending(undoable) == 0
    assert not KeptTask.objects.filter(state=KeptTask.State.KEPT).exists()


def test_a_task_whose_id_is_taken_again_is_a_conflict_and_left_out(eq: EntroQ) -> None:
    taken, free = insert(eq), insert(eq)
    undoable = delete_kept(eq, [taken, free])
    insert(eq, "elsewhere", b"new", id=taken.id)

    result = undo.undo(eq, undoable)

    assert result.done == [TaskID(free.id, free.version)]
    assert result.conflicts == [(TaskID(taken.id, taken.version), undo.TAKEN_AGAIN)]
    assert eq.tasks(ids=[taken.id])[0].value == b"new"  # the newcomer is left alone
    assert KeptTask.objects.get(task_id=taken.id).state == KeptTask.State.CONFLICT
    assert result.entry is not None
    assert result.entry.outcome == AuditEntry.Outcome.PARTIAL


def test_keeping_and_deleting_are_all_or_nothing(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = insert(eq)
    keeping = undo.begin(eq, "delete", username="tester")
    assert keeping is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(KeptTask.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        keeping.modify(keeping.tasks(ids=[task.id])[0].as_deletion())
    assert [t.id for t in eq.tasks(ids=[task.id])] == [task.id], "the deletion rolled back"
    assert not Undoable.objects.exists()


def test_a_refused_deletion_keeps_nothing(eq: EntroQ) -> None:
    task = insert(eq)
    eq.modify(task.as_change(value=b"changed"))
    keeping = undo.begin(eq, "delete", username="tester")
    assert keeping is not None
    result = ops.apply_to_versions(keeping, [task.id_version()], ops.delete, values=True)
    assert result.conflicts
    assert keeping.finish() is None
    assert not KeptTask.objects.exists()


def test_workers_deletions_are_not_kept(eq: EntroQ) -> None:
    task = insert(eq)
    claimed = eq.try_claim("jobs")
    assert claimed is not None
    assert claimed.id == task.id
    eq.modify(claimed.as_deletion())
    assert not KeptTask.objects.exists()
    assert not eq.tasks(bulk.BULK_QUEUE), "no pruning is scheduled for nothing kept"


def test_nothing_is_kept_when_keeping_is_off(eq: EntroQ, settings: Settings) -> None:
    settings.ENTROQ = {"KEEP_DELETED_SECONDS": 0}
    assert undo.begin(eq, "delete", username="tester") is None
    with pytest.raises(ImproperlyConfigured, match="must not be negative"):
        AppSettings(KEEP_DELETED_SECONDS=-1)


def test_a_move_is_undone_by_moving_back_the_tasks_unchanged_since(eq: EntroQ) -> None:
    same, changed = insert(eq, "a"), insert(eq, "a")
    keeping = undo.begin(eq, "move", username="tester")
    assert keeping is not None
    ops.apply_to_versions(keeping, [same.id_version(), changed.id_version()], ops.moving("b"))
    undoable = keeping.finish()
    assert undoable is not None
    [now_changed] = eq.tasks(ids=[changed.id])
    eq.modify(now_changed.as_change(value=b"touched"))

    result = undo.undo(eq, undoable)

    assert [item.id for item in result.done] == [same.id]
    assert [item.id for item, _ in result.conflicts] == [changed.id]
    assert "changed since the move" in result.conflicts[0][1]
    assert eq.tasks(ids=[same.id])[0].queue == "a"
    assert eq.tasks(ids=[changed.id])[0].queue == "b"
    [carrier] = eq.tasks(bulk.BULK_QUEUE)
    assert carrier.id == undo.PRUNE_TASK_ID, "kept moves are pruned in their time too"


def test_an_undo_does_at_most_its_limit_and_goes_on_where_it_stopped(eq: EntroQ) -> None:
    tasks = [insert(eq) for _ in range(5)]
    undoable = delete_kept(eq, tasks)

    first = undo.undo(eq, undoable, limit=3)
    second = undo.undo(eq, undoable, limit=3)

    assert (len(first.done), first.remaining) == (3, 2)
    assert (len(second.done), second.remaining) == (2, 0)
    assert len(eq.tasks("jobs")) == 5


def test_a_bulk_delete_is_kept_and_undone_from_its_end_entry(eq: EntroQ, user: User) -> None:
    tasks = [insert(eq, "many", str(n).encode()) for n in range(7)]
    run = bulk.start(user, "delete", bulk.Scope("many"))
    assert undo.run_offer(run) is None, "a running run offers no undo"

    run = bulk.execute(run)

    assert run.status == BulkRun.Status.DONE
    assert eq.tasks("many") == []
    undoable = Undoable.objects.get(run=run)
    assert undoable.entry is not None
    assert undoable.entry.action == "bulk delete"
    assert undoable.entry.detail.startswith(f"run #{run.pk} finished")
    assert undo.run_offer(run) == (undoable.pk, 7)
    assert undo.pending_by_entry([undoable.entry.pk]) == {undoable.entry.pk: (undoable.pk, 7)}
    undo.undo(eq, undoable, user)
    assert sorted(t.value for t in eq.tasks("many")) == sorted(t.value for t in tasks)


def test_a_bulk_move_is_undone_and_a_running_run_cannot_be(eq: EntroQ, user: User) -> None:
    for _ in range(3):
        insert(eq, "from")
    run = bulk.start(user, "move", bulk.Scope("from"), target="to")
    undoable = Undoable.objects.create(run=run, username="ops", action="move")
    with pytest.raises(ValueError, match="still running"):
        undo.undo(eq, undoable)
    undoable.delete()

    run = bulk.execute(run)
    undo.undo(eq, Undoable.objects.get(run=run))

    assert len(eq.tasks("from")) == 3
    assert eq.tasks("to") == []


def test_kept_deletions_are_pruned_after_the_retention_period(eq: EntroQ) -> None:
    old, young = delete_kept(eq, [insert(eq)]), delete_kept(eq, [insert(eq)])
    Undoable.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(hours=25))
    [carrier] = eq.tasks(bulk.BULK_QUEUE)
    assert (carrier.id, carrier.value) == (undo.PRUNE_TASK_ID, undo.PRUNE_VALUE)
    assert carrier.at > eq.time() + timedelta(hours=23), "due when the first is"

    # The bulk-run worker's handler prunes, then waits for the next one due.
    [next_time] = bulk.work(carrier)
    eq.modify(next_time)

    assert list(Undoable.objects.values_list("pk", flat=True)) == [young.pk]
    assert KeptTask.objects.count() == 1
    [rescheduled] = eq.tasks(bulk.BULK_QUEUE)
    assert rescheduled.at > eq.time() + timedelta(hours=23)
    Undoable.objects.update(created=timezone.now() - timedelta(days=2))
    [ends] = bulk.work(rescheduled)
    eq.modify(ends)
    assert not Undoable.objects.exists()
    assert eq.tasks(bulk.BULK_QUEUE) == []
    assert undo.kept_summary().deleted == 0


def test_kept_summary_counts_what_is_kept(eq: EntroQ) -> None:
    delete_kept(eq, [insert(eq, value=b"12345"), insert(eq, value=b"678")])
    summary = undo.kept_summary()
    assert (summary.deleted, summary.bytes, summary.moved, summary.hours) == (2, 8, 0, 24)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("eq", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_eq_rm_and_clear_are_kept_audited_and_undone_from_the_command_line(eq: EntroQ) -> None:
    single = insert(eq, "jobs", b"one", attempt=2)
    for n in range(3):
        insert(eq, "full", str(n).encode())

    _, said = run("rm", str(single.id))
    rm_undo = Undoable.objects.get()
    assert f"undo with: manage.py eq undo {rm_undo.pk}" in said
    assert rm_undo.entry is not None
    assert rm_undo.entry.action == "delete"
    assert rm_undo.entry.username.endswith("(manage.py eq)")
    _, said = run("clear", "full", "--yes")
    clear_undo = Undoable.objects.exclude(pk=rm_undo.pk).get()
    assert clear_undo.entry is not None
    assert clear_undo.entry.queue == "full"
    listed, _ = run("kept")
    assert "kept: 4 deleted tasks" in listed
    assert str(clear_undo.pk) in listed

    printed, _ = run("undo", str(rm_undo.pk))
    assert printed.strip() == "put back 1, conflicts 0"
    assert eq.tasks(ids=[single.id])[0].value == b"one"
    run("undo", str(clear_undo.pk))
    assert len(eq.tasks("full")) == 3
    again, _ = run("undo", str(clear_undo.pk))
    assert "undone already" in again
    with pytest.raises(Exception, match="nothing to undo as #999999"):
        run("undo", "999999")


def fail_into_error_queue(eq: EntroQ, queue: str, count: int) -> list[Task]:
    """Insert ``count`` tasks into ``queue`` and have a worker fail each into its error queue."""
    originals, _ = eq.modify(*(inserting_into(queue, value=b"%d" % n) for n in range(count)))

    def fail(task: Task) -> list[ModifyArg]:
        raise MoveTaskError("broken")

    eq.new_worker(queue).run(fail, until_empty=True)
    return originals


def test_a_retry_is_undone_by_returning_unchanged_tasks_to_the_error_queue(eq: EntroQ) -> None:
    fail_into_error_queue(eq, "mail", 3)
    failed = eq.tasks("mail/err")
    keeping = undo.begin(eq, "retry", username="tester")
    assert keeping is not None
    retried = ops.apply_to_versions(
        keeping, [t.id_version() for t in failed], ops.retry, values=True
    )
    assert len(retried.done) == 3
    undoable = keeping.finish()
    assert undoable is not None
    assert (undoable.left, undoable.scope) == (3, "mail")
    [running, *_] = eq.tasks("mail")
    eq.modify(running.as_change(value=b"a worker got to it"))

    result = undo.undo(eq, undoable)

    assert [item.id for item, _ in result.conflicts] == [
        e.id for e in failed if ErrorTaskValue.from_json(e.value).task.id == running.id
    ]
    assert "has run or changed since" in result.conflicts[0][1]
    assert len(result.done) == 2
    assert eq.queues(match_prefix="mail") == {"mail": 1, "mail/err": 2}
    back = eq.tasks("mail/err")
    assert {t.id for t in back} <= {t.id for t in failed}, "with their own IDs"
    assert {t.value for t in back} <= {t.value for t in failed}
    assert undo.outcome(undoable, result)[1].startswith("Returned 2 tasks to the error queue")


def test_counts_and_scope_follow_what_is_kept_and_put_back(eq: EntroQ) -> None:
    tasks = [insert(eq, "billing/a", b"12345"), insert(eq, "billing/b", b"678")]
    undoable = delete_kept(eq, tasks)
    assert (undoable.left, undoable.left_bytes, undoable.scope) == (2, 8, "billing/")
    assert undo.recent() == [(undoable, 2)]

    undo.undo(eq, undoable, limit=1)

    undoable.refresh_from_db()
    [back] = eq.tasks(ids=[t.id for t in tasks])
    assert (undoable.left, undoable.left_bytes) == (1, 8 - len(back.value))
    assert undo.kept_summary().deleted == 1
    assert undo.pending(undoable) == 1


def test_values_are_put_back_a_bounded_number_of_bytes_at_a_time(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [insert(eq, value=bytes(100)) for _ in range(5)]
    undoable = delete_kept(eq, tasks)
    monkeypatch.setattr(undo, "CHUNK_BYTES", 250)
    chunks: list[int] = []
    put_back = undo._put_back

    def counted(eq: EntroQ, rows: list[KeptTask], result: undo.UndoResult) -> None:
        chunks.append(len(rows))
        put_back(eq, rows, result)

    monkeypatch.setattr(undo, "_put_back", counted)

    result = undo.undo(eq, undoable)

    assert (len(result.done), result.remaining) == (5, 0)
    assert chunks == [2, 2, 1]
    assert len(eq.tasks("jobs")) == 5


def test_by_bytes_groups_rows_under_the_bound_and_never_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(undo, "CHUNK_BYTES", 10)
    assert list(undo.by_bytes([4, 4, 4, 30, 1], lambda n: n)) == [[4, 4], [4], [30], [1]]
    assert list(undo.by_bytes([], lambda n: n)) == []


def test_common_prefix() -> None:
    assert undo.common_prefix(["billing/a", "billing/b/err", "billing/"]) == "billing/"
    assert undo.common_prefix(["a", "b"]) == ""
    assert undo.common_prefix(["only"]) == "only"


def test_a_keeping_rolled_back_leaves_its_action_as_it_was(
    eq: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = insert(eq), insert(eq)
    keeping = undo.begin(eq, "delete", username="tester")
    assert keeping is not None
    keeping.tasks(ids=[first.id, second.id])
    create = KeptTask.objects.bulk_create

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(KeptTask.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        keeping.modify(first.as_deletion())
    monkeypatch.setattr(KeptTask.objects, "bulk_create", create)

    assert not Undoable.objects.exists()
    assert len(eq.tasks("jobs")) == 2, "the deletion was rolled back with its keeping"
    keeping.modify(second.as_deletion())
    undoable = keeping.finish()
    assert undoable is not None
    assert (undoable.left, Undoable.objects.get().left) == (1, 1)
