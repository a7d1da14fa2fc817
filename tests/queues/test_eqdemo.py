"""``manage.py eqdemo``: sample data a newcomer can explore, added once."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from queues import demo
from queues.entroq import EntroQ, MemoryBackend, RetryTaskError, inserting_into, ops


@pytest.mark.django_db
def test_eqdemo_seeds_queues_failures_and_a_user_once(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("eqdemo", "--user", "demo", "--tasks", "5")
    call_command("eqdemo", "--user", "demo", "--tasks", "5")

    out = capsys.readouterr().out
    assert "Created the superuser 'demo'" in out
    assert "not adding more" in out
    assert User.objects.get(username="demo").is_superuser
    sizes = EntroQ().queues()
    assert {name: sizes[name] for name in demo.QUEUES} == dict.fromkeys(demo.QUEUES, 5)
    failures = EntroQ().tasks("billing/charge/err")
    assert len(failures) == 40
    unwrapped = ops.error_record(failures[0])
    assert unwrapped is not None
    assert unwrapped.task.queue == "billing/charge"


def test_the_demo_handler_finishes_or_asks_for_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("queues.demo.time.sleep", lambda seconds: None)
    eq = EntroQ(MemoryBackend())
    outcomes = set()
    for _ in range(40):
        eq.modify(inserting_into("billing/charge"))
        task = eq.try_claim("billing/charge")
        assert task is not None
        try:
            demo.work(task)
            outcomes.add("done")
        except RetryTaskError as error:
            outcomes.add(str(error).split(" (request")[0])
        eq.modify(task.as_deletion())
    assert outcomes == {"done", "timeout after 30 s talking to payments-api"}
