"""Error triage: failures grouped by kind, and acted on a group at a time."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from queues import bulk, triage
from queues.entroq import EntroQ, ErrorTaskValue, TaskData, inserting

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("err", "key"),
    [
        ("timeout after 30 s (request 4411)", "timeout after 30 s (request <n>)"),
        ("task 6f1c2a34-1111-4a2b-9c3d-0123456789ab not found", "task <id> not found"),
        ("at 2026-11-29T02:15:00.123Z: disk full", "at <time>: disk full"),
        ("bad checksum deadbeefcafe  in\n  block 7", "bad checksum <hex> in block 7"),
        ("HTTP 503 from billing", "HTTP 503 from billing"),
        (
            "Traceback (most recent call last):\n  File x, line 12\nKeyError: 'sku'",
            "Traceback (most recent call last): … KeyError: 'sku'",
        ),
        ("", ""),
    ],
)
def test_errors_are_normalized_to_their_kind(err: str, key: str) -> None:
    assert triage.normalize(err) == key


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

    page = operator.get("/triage?queue=pay/err")

    groups = page.context["groups"]
    assert [(g.key, g.count) for g in groups] == [
        ("card <n> declined", 5),
        ("<b>x</b>", 1),
        ("timeout after 3 s", 1),
    ]
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
