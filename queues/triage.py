"""Error triage: the tasks of an error queue grouped by what went wrong.

Errors are grouped by their text with the parts that differ from one failure to the
next taken out: IDs, timestamps, long hex strings and numbers. ``SCAN_CAP`` bounds
how many tasks a page reads; the page says so when a queue is larger.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from queues.models import Task as TaskRow

SCAN_CAP = 200_000
MAX_KEY = 300
NORMALIZERS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<id>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
        "<time>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    # Long numbers are IDs and counts; short ones (HTTP 503, errno 13) tell kinds apart.
    (re.compile(r"\d{4,}|\d+\.\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalize(err: str) -> str:
    """Return ``err`` with what varies between failures of one kind taken out.

    A many-line error (a traceback) is known by its first and last lines: the last
    names the exception, which a cut of the whole text would lose.
    """
    lines = [line for line in err.splitlines() if line.strip()]
    if len(lines) > 2:
        err = f"{lines[0][:MAX_KEY]} … {lines[-1][:MAX_KEY]}"
    err = err[: 4 * MAX_KEY]  # what is cut here cannot reach the key anyway
    for pattern, replacement in NORMALIZERS:
        err = pattern.sub(replacement, err)
    return err.strip()[:MAX_KEY]


@dataclass
class Group:
    """The failures of one kind in an error queue."""

    key: str
    count: int
    first_seen: datetime
    last_seen: datetime
    sample: uuid.UUID
    example: str


def groups(queue: str, cap: int = SCAN_CAP) -> tuple[list[Group], int]:
    """Return the queue's failures grouped, most frequent first, and how many were read."""
    found: dict[str, Group] = {}
    read = 0
    rows = TaskRow.objects.filter(queue=queue).order_by("at", "id")
    for id, err, created in rows.values_list("id", "err", "created")[:cap].iterator(2000):
        read += 1
        key = normalize(err)
        group = found.get(key)
        if group is None:
            found[key] = Group(key, 1, created, created, id, err)
        else:
            group.count += 1
            group.first_seen = min(group.first_seen, created)
            group.last_seen = max(group.last_seen, created)
    return sorted(found.values(), key=lambda g: (-g.count, g.key)), read
