"""Error triage: the tasks of an error queue grouped by what went wrong.

Each task's error kind (``queues.entroq.kinds``) is stored beside its error, so the
groups come from one GROUP BY over an index of failed tasks, never from error texts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, TextField
from django.db.models.functions import Cast

from queues.models import Task as TaskRow

#: The most groups a page shows, the largest first.
MAX_GROUPS = 100


@dataclass
class Group:
    """The failures of one kind in an error queue."""

    key: str
    count: int
    first_seen: datetime
    last_seen: datetime
    sample: uuid.UUID
    example: str


def groups(queue: str) -> tuple[list[Group], int, int]:
    """Return the largest groups of the queue's failures, the number of tasks in all
    groups, and the number of groups."""
    rows = TaskRow.objects.filter(queue=queue)
    # A sample by the largest ID as text: an aggregate on every database, in one scan.
    summary = {"n": Count("*"), "first": Min("created"), "last": Max("created")}
    summary["sample"] = Max(Cast("id", TextField()))
    found = list(
        rows.exclude(err_kind="")
        .values("err_kind")
        .annotate(**summary)
        .values_list("err_kind", *summary)
        .order_by()
    )
    # Tasks without an error are outside the index of failures; they are rare here.
    if (no_error := rows.filter(err_kind="").aggregate(**summary))["n"]:
        found.append(("", *no_error.values()))
    found.sort(key=lambda row: (-row[1], row[0]))
    shown = [(*row[:4], uuid.UUID(row[4])) for row in found[:MAX_GROUPS]]
    errors = dict(rows.filter(id__in=[row[4] for row in shown]).values_list("id", "err"))
    return (
        [
            Group(k, n, first, last, sample, errors.get(sample, ""))
            for k, n, first, last, sample in shown
        ],
        sum(row[1] for row in found),
        len(found),
    )
