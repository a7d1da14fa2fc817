"""Claims over a prefix (``jobs/*``) and over every queue (``*``), on every backend."""

from __future__ import annotations

import threading
import time
from collections import Counter

from queues import entroq
from queues.entroq import EntroQ


def fill(eq: EntroQ, *queues: str, each: int = 1) -> None:
    eq.modify(*(entroq.inserting_into(q) for q in queues for _ in range(each)))


def test_a_prefix_claim_takes_fairly_from_every_queue_under_it(eq: EntroQ) -> None:
    fill(eq, "jobs/a", "jobs/b", "jobs/c", each=30)
    fill(eq, "jobsx", "other", "job", each=5)

    taken: Counter[str] = Counter()
    for _ in range(45):
        task = eq.try_claim("jobs/*", duration=60)
        assert task is not None
        taken[task.queue] += 1

    assert set(taken) == {"jobs/a", "jobs/b", "jobs/c"}, "only queues under the prefix"
    assert min(taken.values()) >= 5, f"each queue has its chance: {taken}"
    batch = eq.try_claim_many("jobs/*", limit=6, duration=60)
    assert Counter(t.queue for t in batch) == {"jobs/a": 2, "jobs/b": 2, "jobs/c": 2}


def test_a_prefix_claim_leaves_out_the_outcome_queues_under_it(eq: EntroQ) -> None:
    fill(eq, "jobs/a/err", "jobs/a/done", "jobs/b/errand", "jobs/c/done-soon")

    batch = eq.try_claim_many("jobs/*", limit=10, duration=60)

    assert sorted(t.queue for t in batch) == ["jobs/b/errand", "jobs/c/done-soon"]
    assert eq.try_claim("*") is None, "every queue but the outcome queues is empty"
    assert eq.try_claim("jobs/a/err") is not None, "named, an outcome queue is claimed"


def test_names_and_prefixes_mix_and_every_queue_is_star(eq: EntroQ) -> None:
    fill(eq, "mail/out", "web")

    first = eq.try_claim("web", "mail/*", "mail/out")
    second = eq.try_claim("web", "mail/*")
    assert first is not None
    assert second is not None
    assert {first.queue, second.queue} == {"web", "mail/out"}
    assert eq.try_claim("*") is None, "every task is held"
    fill(eq, "anything/at/all")
    claimed = eq.try_claim("*")
    assert claimed is not None
    assert claimed.queue == "anything/at/all"


def test_a_waiting_prefix_claim_takes_a_task_of_a_queue_made_after_it_began(
    eq: EntroQ, other: EntroQ
) -> None:
    fill(eq, "unrelated")
    claimed: list[entroq.Task] = []
    waiting = threading.Thread(
        target=lambda: claimed.append(other.claim("jobs/*", timeout=20, poll_time=20))
    )
    waiting.start()
    time.sleep(0.5)

    inserted = time.monotonic()
    fill(eq, "jobs/created-later")
    waiting.join(20)

    assert [t.queue for t in claimed] == ["jobs/created-later"]
    assert time.monotonic() - inserted < 3, "woken by the insert, not by its poll"


def test_a_prefix_claim_skips_the_paused_queues_under_it(eq: EntroQ) -> None:
    fill(eq, "jobs/a", "jobs/b", each=10)
    eq.pause("jobs/b")

    claimed = eq.try_claim_many("jobs/*", limit=20, duration=60)

    assert {t.queue for t in claimed} == {"jobs/a"}
    assert eq.try_claim("jobs/*") is None
    eq.pause("jobs/*")
    eq.resume("jobs/b")
    assert eq.try_claim("jobs/*") is None, "the prefix pause holds jobs/b too"


def test_an_outcome_queue_does_not_wake_a_claim_over_its_prefix() -> None:
    from queues.entroq.backend import Notifier

    notifier = Notifier()
    with notifier.subscribe(["jobs/*"]) as event:
        notifier.notify(["jobs/a/err", "jobs/a/done"])
        assert not event.is_set(), "a failure or a result is nothing to claim"
        notifier.notify(["jobs/a"])
        assert event.is_set()
