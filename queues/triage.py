"""Error triage: the tasks of an error queue grouped by what went wrong.

Each task's error kind (``queues.entroq.kinds``) is stored beside its error, so the
groups come from one GROUP BY over the error kind index, never from error texts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, TextField
from django.db.models.functions import Cast

from queues.models import TRIAGED
from queues.models import Task as TaskRow

#: The most groups a page shows, the largest first.
MAX_GROUPS = 50


@dataclass
class Group:
    """The failures of one kind in an error queue."""

    key: str
    count: int
    first_seen: datetime
    last_seen: datetime
    #: A task of the kind, and its error ("" if it went away meanwhile).
    sample: uuid.UUID
    example: str


def groups(queue: str) -> tuple[list[Group], int, int]:
    """Return the largest groups of the queue's failures, the number of tasks in all
    groups, and the number of groups.

    In an error queue every task counts, those without an error in a group of their
    own ("" kind); elsewhere only tasks with an error.
    """
    # The condition of the error kind index, which holds (kind, modified, id): the
    # groups are read from it alone, never from the table. A failed task was last
    # modified when it failed (it was moved, or inserted, into the error queue then).
    rows = TaskRow.objects.filter(TRIAGED, queue=queue)
    found = list(
        rows.values("err_kind")
        .annotate(
            n=Count("*"),
            first=Min("modified"),
            last=Max("modified"),
            # A sample: the largest ID, as text so that every database has a max.
            sample=Max(Cast("id", TextField())),
        )
        .values_list("err_kind", "n", "first", "last", "sample")
        .order_by()
    )
    found.sort(key=lambda row: (-row[1], row[0]))
    shown = [(*row[:4], uuid.UUID(row[4])) for row in found[:MAX_GROUPS]]
    errors = dict(TaskRow.objects.filter(id__in=[row[4] for row in shown]).values_list("id", "err"))
    return (
        [
            Group(kind, n, first, last, sample, errors.get(sample, ""))
            for kind, n, first, last, sample in shown
        ],
        sum(row[1] for row in found),
        len(found),
    )
