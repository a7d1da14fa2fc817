"""Error triage: the tasks of an error queue grouped by what went wrong.

Each task's error kind (``queues.entroq.kinds``) is stored beside its error, so the
groups come from one GROUP BY over the error kind index, never from error texts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, Q

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
    #: The newest task of the kind, and its error; None if it went away meanwhile.
    sample: uuid.UUID | None
    example: str


def groups(queue: str) -> tuple[list[Group], int, int]:
    """Return the largest groups of the queue's failures, the number of tasks in all
    groups, and the number of groups.

    In an error queue every task counts, those without an error in a group of their
    own ("" kind); elsewhere only tasks with an error.
    """
    # The condition of the error kind index, which holds (kind, modified): the groups
    # are read from it alone, never from the table. A failed task was last modified
    # when it failed (it was moved, or inserted, into the error queue then).
    rows = TaskRow.objects.filter(TRIAGED, queue=queue)
    found = list(
        rows.values("err_kind")
        .annotate(n=Count("*"), first=Min("modified"), last=Max("modified"))
        .values_list("err_kind", "n", "first", "last")
        .order_by()
    )
    found.sort(key=lambda row: (-row[1], row[0]))
    shown = found[:MAX_GROUPS]
    # The newest task of each kind shown, by one probe of the index per kind.
    newest = Q()
    for kind, _, _, last in shown:
        newest |= Q(err_kind=kind, modified=last)
    samples: dict[str, tuple[uuid.UUID | None, str]] = {}
    if shown:
        for kind, id, err in rows.filter(newest).values_list("err_kind", "id", "err"):
            samples.setdefault(kind, (id, err))
    return (
        [
            Group(kind, n, first, last, *samples.get(kind, (None, "")))
            for kind, n, first, last in shown
        ],
        sum(row[1] for row in found),
        len(found),
    )
