"""Sample data and a sample worker, so a newcomer sees the dashboard alive (``make demo``)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

from queues.entroq import EntroQ, ErrorTaskValue, ModifyArg, RetryTaskError, Task, TaskData
from queues.entroq.modify import inserting

# Each sample queue: the share of attempts that fail, and how.
QUEUES = {
    "emails/send": (0.05, "SMTP 451: mailbox of user{}@example.com temporarily unavailable"),
    "images/resize": (0.1, "image {}.jpg is truncated: expected 48213 bytes, got 1024"),
    "billing/charge": (0.35, "timeout after 30 s talking to payments-api (request {})"),
}


# The failures already waiting, a few kinds in different numbers, for the triage page.
SEEDED_FAILURES = [
    QUEUES["billing/charge"][1],
    QUEUES["billing/charge"][1],
    QUEUES["billing/charge"][1],
    "HTTP 503 from payments-api",
    QUEUES["billing/charge"][1],
    "card ending {} declined: insufficient funds",
    "HTTP 503 from payments-api",
    "KeyError: 'currency'",
]


def work(task: Task) -> Sequence[ModifyArg]:
    """Take a moment over ``task``; fail now and then (the worker retries, then gives up)."""
    time.sleep(random.uniform(0.2, 1.5))
    share, failure = QUEUES.get(task.queue, (0.0, ""))
    if random.random() < share:
        raise RetryTaskError(failure.format(random.randint(1000, 99999)))
    return [task.as_deletion()]


def sample_value(queue: str, number: int) -> bytes:
    body: dict[str, object]
    if queue == "emails/send":
        body = {"to": f"user{number}@example.com", "template": "welcome", "locale": "en"}
    elif queue == "images/resize":
        body = {"image": f"s3://uploads/{number}.jpg", "sizes": [64, 256, 1024]}
    else:
        body = {"customer": f"cus_{number:06d}", "amount_cents": number * 7 % 10_000}
    return json.dumps(body).encode()


def seed(eq: EntroQ, tasks: int = 300) -> int:
    """Insert sample tasks, failures and odd values; return how many were inserted."""
    data = [
        TaskData(queue=queue, value=sample_value(queue, n))
        for n in range(tasks)
        for queue in QUEUES
    ]
    now = eq.time()
    for n in range(40):  # failures that already gave up, waiting for an operator
        failed = Task(
            queue="billing/charge",
            id=uuid.uuid4(),
            version=3,
            at=now,
            claimant=eq.id,
            claims=3,
            value=sample_value("billing/charge", n),
            created=now - timedelta(minutes=n),
            modified=now,
            attempt=3,
            err=SEEDED_FAILURES[n % len(SEEDED_FAILURES)].format(random.randint(1000, 99999)),
        )
        value = ErrorTaskValue(task=failed, err=failed.err).to_json()
        data.append(TaskData(queue="billing/charge/err", value=value, err=failed.err))
    data += [
        TaskData(
            queue="reports/nightly", value=b'{"report": "revenue"}', at=now + timedelta(days=1)
        ),
        TaskData(queue="demo/odd-values", value=b"<script>alert(1)</script>"),
        TaskData(queue="demo/odd-values", value=b'<div hx-get="/x" hx-trigger="load">x</div>'),
        TaskData(queue="demo/odd-values", value=bytes(range(256)) * 4),
        TaskData(queue="demo/odd-values", value=b"plain text, " * 30_000),
    ]
    eq.modify(inserting(*data))
    return len(data)
