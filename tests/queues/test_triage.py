"""Error triage: failures grouped by kind, and acted on a group at a time."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from queues import bulk
from queues.entroq import EntroQ, ErrorTaskValue, TaskData, inserting

pytestmark = pytest.mark.django_db(transaction=True)


def fail(eq: EntroQ, errors: list[str]) -> None:
    originals, _ = eq.modify(inserting(*[TaskData(queue="pay") for _ in errors]))
    eq.modify(
        *[t.as_deletion() for t in originals],
        inserting(
            *[
                TaskData(queue="pay/err", value=ErrorTaskValue(t, e).to_json(), err=e)
                for t, e in zip(originals, errors, strict=True)
            ]
        ),
    )


def test_the_triage_page_groups_failures_most_frequent_first(operator: Client) -> None:
    eq = EntroQ()
    fail(eq, [f"card {n} declined" for n in range(1000, 1005)] + ["timeout after 3 s", "<b>x</b>"])
    eq.modify(inserting(TaskData(queue="pay/err")))  # moved here by hand, without an error

    page = operator.get("/triage?queue=pay/err")

    groups = page.context["groups"]
    assert [(g.key, g.count) for g in groups] == [
        ("card <n> declined", 5),
        ("", 1),
        ("<b>x</b>", 1),
        ("timeout after 3 s", 1),
    ]
    assert (page.context["total"], page.context["kinds"]) == (8, 4)
    assert eq.tasks(ids=[groups[0].sample])[0].err.startswith("card 10")
    text = page.content.decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    assert "Retry 5…" in text
    assert page.context["source"] == "pay"


def test_a_group_is_retried_alone(operator: Client) -> None:
    eq = EntroQ()
    fail(eq, [f"card {n} declined" for n in range(1000, 1004)] + ["timeout", "timeout"])
    plan = operator.post(
        "/bulk/plan", {"queue": "pay/err", "group": "card <n> declined", "action": "retry"}
    )
    assert 'name="group" value="card &lt;n&gt; declined"' in plan.content.decode()
    assert plan.context["count"] == 4
    assert "error like “card &lt;n&gt; declined”" in plan.content.decode()

    run = bulk.start(
        User.objects.get(username="operator"),
        "retry",
        bulk.Scope("pay/err", error_group="card <n> declined"),
    )
    run = bulk.execute(run)

    assert (run.total, run.done) == (4, 4)
    assert sorted(t.err for t in eq.tasks("pay/err")) == ["timeout", "timeout"]
    assert len(eq.tasks("pay")) == 4
