"""``manage.py eq``: the operator's verbs, their output and their errors."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from queues import entroq
from queues.bulk import BULK_QUEUE
from queues.entroq import EntroQ
from tests.helpers import start_manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eq() -> Iterator[EntroQ]:
    with EntroQ(entroq.DjangoBackend()) as client:
        yield client


def task_queues(eq: EntroQ) -> dict[str, int]:
    """Return the queues and sizes, but for the bulk queue, where a deletion kept for
    undo schedules its pruning."""
    return {queue: n for queue, n in eq.queues().items() if queue != BULK_QUEUE}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("eq", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_qs_shows_the_stats_of_matching_queues(eq: EntroQ) -> None:
    eq.modify(entroq.inserting_into("jobs/a"), entroq.inserting_into("jobs/a"))
    eq.modify(entroq.inserting_into("other", arrival_in=60))

    table, _ = run("qs", "--prefix", "jobs/")
    as_json, _ = run("stats", "--exact", "other", "--json")

    assert table.splitlines() == [
        "QUEUE   SIZE  AVAILABLE  CLAIMED  FUTURE  MAX CLAIMS",
        "jobs/a  2     2          0        0       0",
    ]
    assert json.loads(as_json) == {
        "other": {
            "name": "other",
            "size": 1,
            "available": 0,
            "claimed": 1,
            "future": 0,
            "maxClaims": 0,
        }
    }


def test_ts_lists_tasks_with_excerpts_or_as_json(eq: EntroQ) -> None:
    [task], _ = eq.modify(entroq.inserting_into("jobs", value=b"x" * 100, err="why\nnot"))

    table, _ = run("ts", "jobs")
    by_id, _ = run("ts", "--id", str(task.id), "--json", "--omit-values")

    header, row = table.splitlines()
    assert header.split() == [
        "ID",
        "VERSION",
        "AT",
        "CLAIMANT",
        "CLAIMS",
        "ATTEMPT",
        "ERR",
        "VALUE",
    ]
    assert row.startswith(str(task.id))
    assert "x" * 39 + "…" in row
    assert "why not" in row
    [listed] = json.loads(by_id)
    assert (listed["id"], listed["queue"], listed["value"]) == (str(task.id), "jobs", "")


def test_ins_takes_the_value_from_an_argument_or_a_file(eq: EntroQ, tmp_path: Path) -> None:
    source = tmp_path / "value.bin"
    source.write_bytes(b"\x00\x01binary")
    explicit = uuid.uuid4()

    printed, _ = run("ins", "jobs", "hello", "--id", str(explicit))
    run("ins", "jobs", "--file", str(source), "--arrival-in", "60")

    assert printed.strip() == f"{explicit}:0"
    assert sorted(t.value for t in eq.tasks("jobs")) == [b"\x00\x01binary", b"hello"]
    with pytest.raises(CommandError, match="cannot read"):
        run("ins", "jobs", "--file", str(tmp_path / "missing"))


def test_ins_reads_standard_input(eq: EntroQ) -> None:
    process = start_manage("eq", "ins", "jobs", "--file", "-")
    _, err = process.communicate(input="from stdin", timeout=60)

    assert process.returncode == 0, err
    assert [t.value for t in eq.tasks("jobs")] == [b"from stdin"]


def test_claim_prints_the_claimed_task(eq: EntroQ) -> None:
    with pytest.raises(CommandError, match="nothing to claim in jobs"):
        run("claim", "jobs", "--try")
    with pytest.raises(CommandError, match=r"no task in jobs after 0\.2 s"):
        run("claim", "jobs", "--timeout", "0.2")
    [task], _ = eq.modify(entroq.inserting_into("jobs", value=b"v"))

    printed, _ = run("claim", "jobs", "--duration", "60")

    claimed = json.loads(printed)
    assert (claimed["id"], claimed["version"], claimed["claims"]) == (str(task.id), 1, 1)
    assert eq.try_claim("jobs") is None


def test_rm_deletes_and_needs_force_for_a_held_task(eq: EntroQ) -> None:
    free, held = (eq.modify(entroq.inserting_into("jobs"))[0][0] for _ in range(2))
    EntroQ(eq.backend).modify(held.as_change(arrival_in=60))

    run("rm", str(free.id))
    with pytest.raises(CommandError, match="conflict: held by another claimant"):
        run("rm", str(held.id))
    run("rm", str(held.id), "--force")

    assert task_queues(eq) == {}
    with pytest.raises(CommandError, match="no task"):
        run("rm", str(uuid.uuid4()))
    with pytest.raises(CommandError, match="not a task ID: 'nope'"):
        run("rm", "nope")


def test_mod_moves_replaces_and_resets(eq: EntroQ) -> None:
    [task], _ = eq.modify(entroq.inserting_into("jobs", value=b"old", attempt=3, err="boom"))

    printed, _ = run("mod", str(task.id), "--queue", "other", "--value", "new", "--reset")

    [changed] = eq.tasks("other")
    assert (changed.id, changed.value, changed.attempt, changed.err) == (task.id, b"new", 0, "")
    assert printed.strip() == f"changed {task.id}:1 in other"
    with pytest.raises(CommandError, match="nothing to change"):
        run("mod", str(task.id))


def test_clear_empties_a_queue_after_confirmation(eq: EntroQ) -> None:
    eq.modify(*(entroq.inserting_into("jobs") for _ in range(1200)))
    eq.modify(entroq.inserting_into("other"))

    with pytest.raises(CommandError, match="pass --yes"):
        run("clear", "jobs")
    printed, progress = run("clear", "jobs", "--yes")

    assert printed.strip() == "deleted 1200, conflicts 0"
    assert "deleted 500 of 1200" in progress
    assert task_queues(eq) == {"other": 1}


def test_clear_leaves_held_tasks_unless_forced(eq: EntroQ) -> None:
    [held, _free], _ = eq.modify(entroq.inserting_into("jobs"), entroq.inserting_into("jobs"))
    EntroQ(eq.backend).modify(held.as_change(arrival_in=60))

    with pytest.raises(CommandError, match="1 task"):
        run("clear", "jobs", "--yes")
    assert [t.id for t in eq.tasks("jobs")] == [held.id]
    run("clear", "jobs", "--yes", "--force")
    assert task_queues(eq) == {}


def test_retry_puts_error_tasks_back_with_their_original_ids(eq: EntroQ) -> None:
    originals, _ = eq.modify(*(entroq.inserting_into("inbox", value=b"%d" % i) for i in range(3)))

    def fail(task: entroq.Task) -> list[entroq.ModifyArg]:
        raise entroq.MoveTaskError("broken")

    eq.new_worker("inbox").run(fail, until_empty=True)
    [one, *_] = eq.tasks("inbox/err")

    run("retry", "inbox/err", "--id", str(one.id))
    assert len(eq.tasks("inbox/err")) == 2
    printed, said = run("retry", "inbox/err", "--all")

    assert printed.strip() == "retried 2, conflicts 0"
    back = {t.id: t for t in eq.tasks("inbox")}
    assert back.keys() == {t.id for t in originals}
    assert {t.value for t in back.values()} == {b"0", b"1", b"2"}
    assert task_queues(eq) == {"inbox": 3}

    # The retry is kept: undoing it takes the retried tasks back to the error queue.
    undo_id = said.split("manage.py eq undo ")[1].split()[0]
    printed, _ = run("undo", undo_id)
    assert printed.strip() == "put back 2, conflicts 0"
    assert task_queues(eq) == {"inbox": 1, "inbox/err": 2}
    with pytest.raises(CommandError, match="--id"):
        run("retry", "inbox/err")


def test_retry_reports_what_it_cannot_unwrap(eq: EntroQ) -> None:
    [plain], _ = eq.modify(entroq.inserting_into("inbox/err", value=b"not json"))

    with pytest.raises(CommandError, match="1 task"):
        run("retry", "inbox/err", "--all")
    assert eq.tasks("inbox/err") == [plain]


def test_time_prints_the_clock(eq: EntroQ) -> None:
    printed, _ = run("time")
    assert printed.strip().endswith("+00:00")


def test_errors_are_one_line_and_a_non_zero_exit(eq: EntroQ) -> None:
    process = start_manage("eq", "rm", "not-an-id")
    _, err = process.communicate(timeout=60)

    assert process.returncode == 1
    assert err.strip() == "CommandError: not a task ID: 'not-an-id'"


def test_prune_refuses_negative_and_endless_ages(eq: EntroQ) -> None:
    for age in ("-3600", "-7d", "1e400", "100000000000d"):
        with pytest.raises(CommandError, match="age"):
            run("prune", "django-tasks/default/done", f"--older-than={age}")
