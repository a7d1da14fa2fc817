"""Pausing queues, the same on every backend (``eq`` fixture: memory, Django, HTTP)."""

from __future__ import annotations

import threading
import time

import pytest

from queues import entroq
from queues.entroq import EntroQ, Pause, pauses


def insert(eq: EntroQ, queue: str, **kwargs: object) -> entroq.Task:
    inserted, _ = eq.modify(entroq.inserting_into(queue, **kwargs))  # type: ignore[arg-type]
    return inserted[0]


def test_claims_skip_a_paused_queue_and_everything_else_goes_on(eq: EntroQ) -> None:
    held = insert(eq, "mail/out", value=b"held")
    insert(eq, "mail/in")
    insert(eq, "web")

    assert [str(p) for p in eq.pause("mail/*", "web")] == ["mail/*", "web"]
    assert eq.try_claim("mail/out", "mail/in", "web") is None
    assert eq.try_claim_many("mail/out", "web", limit=5) == []
    with pytest.raises(entroq.ClaimTimeout):
        eq.claim("web", timeout=0.3, poll_time=0.1)

    # Not claims: inserts, listings, changes and deletions go on, in queues created
    # after the pause too.
    later = insert(eq, "mail/new", value=b"later")
    assert [t.id for t in eq.tasks("mail/out")] == [held.id]
    eq.modify(held.as_change(queue="mail/in", value=b"changed"))
    eq.modify(later.as_deletion())
    assert eq.queues(match_prefix="mail/") == {"mail/in": 2}
    assert eq.try_claim("mail/in") is None

    assert eq.resume("mail/*") == [Pause("mail/", prefix=True)]
    claimed = eq.try_claim("mail/in", "web")
    assert claimed is not None
    assert claimed.queue == "mail/in", "web is still paused"
    assert [str(p) for p in eq.paused()] == ["web"]
    eq.resume("web")
    assert eq.try_claim("web") is not None


def test_a_pause_is_in_force_once_and_ends_as_it_was_given(eq: EntroQ) -> None:
    insert(eq, "jobs/a")

    assert [str(p) for p in eq.pause("jobs/*", "jobs/*")] == ["jobs/*"]
    assert eq.pause("jobs/*") == [], "already paused"
    [paused] = eq.paused()
    assert (str(paused), paused.prefix) == ("jobs/*", True)
    assert paused.since is not None
    assert abs((eq.time() - paused.since).total_seconds()) < 60

    assert eq.resume("jobs/a") == [], "one queue of a paused prefix stays paused"
    assert eq.try_claim("jobs/a") is None
    assert eq.resume("jobs/*") != []
    assert eq.paused() == []
    assert eq.resume("jobs/*") == []


def test_every_queue_can_be_paused(eq: EntroQ) -> None:
    insert(eq, "anything")

    eq.pause("*")
    assert eq.try_claim("anything") is None
    eq.resume("*")

    assert eq.try_claim("anything") is not None


def test_a_resume_wakes_the_claims_waiting_on_the_queue(eq: EntroQ, other: EntroQ) -> None:
    insert(eq, "jobs/a")
    eq.pause("jobs/*")
    claimed: list[entroq.Task] = []
    waiting = threading.Thread(
        target=lambda: claimed.append(other.claim("jobs/a", timeout=20, poll_time=20))
    )
    waiting.start()
    time.sleep(0.5)
    assert not claimed, "a paused queue is not claimed"

    resumed = time.monotonic()
    eq.resume("jobs/*")
    waiting.join(20)

    assert claimed, "the waiting claim took the task"
    assert time.monotonic() - resumed < 3, "woken by the resume, not by its poll"


@pytest.mark.parametrize("text", ["", "\x00", "a" * 501, "jobs/\x00/*"])
def test_a_pause_of_what_no_queue_can_be_is_refused(eq: EntroQ, text: str) -> None:
    with pytest.raises(ValueError, match="paused"):
        eq.pause(text)
    assert eq.paused() == []


def test_pauses_in_force_are_bounded(eq: EntroQ, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pauses, "MAX_PAUSES", 2)

    eq.pause("a", "b")
    with pytest.raises(ValueError, match="at most 2 pauses"):
        eq.pause("c")

    assert [str(p) for p in eq.paused()] == ["a", "b"], "the refused pause left nothing"
