"""What the dashboard lists, apart from its pages: the queues with their problems, and
a queue's tasks a page at a time or by a bounded search of their values.

As Django's admin keeps its ``ChangeList`` apart from its views, this module knows
nothing of requests: a view reads the query string, and asks for rows and pages here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import OperationalError

from queues.conf import app_settings
from queues.entroq import EntroQ, QueueStat, Task, wire
from queues.entroq.django_backend import is_timeout
from queues.entroq.errors import ERROR_SUFFIX, default_err_qmap

# The queues overview.


@dataclass
class QueueRow:
    stat: QueueStat
    #: The size of the paired error queue; None for an error queue itself.
    errors: int | None
    #: Seconds the oldest available task has waited, if any is available.
    age: float | None
    problems: list[str] = field(default_factory=list)
    #: A task was claimed often: workers may be crashing on it.
    looping: bool = False

    @property
    def is_error_queue(self) -> bool:
        return self.stat.name.endswith(ERROR_SUFFIX)


SORTS: dict[str, Callable[[QueueRow], Any]] = {
    "name": lambda row: row.stat.name,
    "size": lambda row: row.stat.size,
    "available": lambda row: row.stat.available,
    "claimed": lambda row: row.stat.claimed,
    "future": lambda row: row.stat.future,
    "max_claims": lambda row: row.stat.max_claims,
    "errors": lambda row: row.errors or 0,
    "age": lambda row: row.age or 0.0,
}
# The overview's columns in order, each a sort key and its heading.
COLUMNS = [
    ("name", "Queue"),
    ("size", "Size"),
    ("available", "Available"),
    ("claimed", "Claimed"),
    ("future", "Scheduled"),
    ("max_claims", "Max claims"),
    ("errors", "Errors"),
    ("age", "Oldest waiting"),
]


def queue_rows(stats: dict[str, QueueStat], now: datetime) -> list[QueueRow]:
    """Return the overview's rows, each with its error queue's size and its problems."""
    warn_claims = app_settings().DASHBOARD_WARN_CLAIMS
    warn_age = app_settings().DASHBOARD_WARN_AGE_SECONDS
    rows = []
    for name, stat in stats.items():
        errors = None
        if not name.endswith(ERROR_SUFFIX):
            paired = stats.get(default_err_qmap(name))
            errors = paired.size if paired else 0
        age = None
        if stat.available and stat.earliest is not None and stat.earliest <= now:
            age = (now - stat.earliest).total_seconds()
        row = QueueRow(stat, errors, age)
        if errors or (row.is_error_queue and stat.size):
            row.problems.append("failed tasks")
        if stat.max_claims >= warn_claims:
            row.looping = True
            row.problems.append(f"a task claimed {stat.max_claims} times")
        if age is not None and age >= warn_age:
            row.problems.append("tasks waiting long")
        rows.append(row)
    return rows


@dataclass
class QueueList:
    """One page of the overview's queues, sorted, and what all of them add up to."""

    #: Every queue's row, sorted; ``rows`` is the page of them shown.
    every: list[QueueRow]
    rows: list[QueueRow]
    page: int
    pages: int
    #: The positions (from 1) of the first and last rows shown.
    first: int
    last: int

    @property
    def totals(self) -> dict[str, int]:
        return {
            "queues": len(self.every),
            "tasks": sum(row.stat.size for row in self.every),
            "problems": sum(1 for row in self.every if row.problems),
        }


def queue_list(
    stats: dict[str, QueueStat],
    now: datetime,
    *,
    sort: str,
    descending: bool,
    page: int,
    per_page: int,
) -> QueueList:
    """Return page ``page`` (the last if past it) of the rows of ``stats`` sorted by
    ``sort``, one of ``SORTS``."""
    every = sorted(queue_rows(stats, now), key=SORTS[sort], reverse=descending)
    # A page of rows: rendering is the cost that grows with the number of queues.
    pages = max(1, -(-len(every) // per_page))
    page = max(1, min(pages, page))
    rows = every[(page - 1) * per_page : page * per_page]
    first = (page - 1) * per_page + 1
    return QueueList(every, rows, page, pages, first, first - 1 + len(rows))


# The tasks of one queue.


def encode_cursor(task: Task) -> str:
    return wire.encode_bound(task.at, task.id)


def decode_cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    """Return the ``(at, id)`` bound a page link carries, or None if absent or garbled."""
    try:
        return wire.decode_bound(raw, "cursor") if raw else None
    except ValueError:
        return None


@dataclass
class TaskPage:
    tasks: list[Task]
    older: str | None  # cursor for the page of older tasks, if there may be one
    newer: str | None


def browse(
    eq: EntroQ,
    queue: str,
    *,
    newest_first: bool,
    after: tuple[datetime, uuid.UUID] | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
    **filters: Any,
) -> TaskPage:
    """Return one page of ``queue`` by keyset: from a bound, never by OFFSET."""
    if before is not None:
        found = eq.tasks(queue, newest_first=True, before=before, limit=limit + 1, **filters)
        more_older, more_newer = len(found) > limit, True
        in_time_order = found[:limit][::-1]
    elif after is not None or not newest_first:
        found = eq.tasks(queue, after=after, limit=limit + 1, **filters)
        more_older, more_newer = after is not None, len(found) > limit
        in_time_order = found[:limit]
    else:
        found = eq.tasks(queue, newest_first=True, limit=limit + 1, **filters)
        more_older, more_newer = len(found) > limit, False
        in_time_order = found[:limit][::-1]
    first, last = (in_time_order[0], in_time_order[-1]) if in_time_order else (None, None)
    return TaskPage(
        tasks=in_time_order[::-1] if newest_first else in_time_order,
        older=encode_cursor(first) if first and more_older else None,
        newer=encode_cursor(last) if last and more_newer else None,
    )


# Searching values.


@dataclass
class Search:
    """A bounded search of values: what it found, and where it stopped if it stopped."""

    needle: str
    page: TaskPage
    scanned: int
    stopped: str | None = None
    #: It stopped at a page of matches, not at the scan cap.
    full: bool = False
    problem: str = ""


def search(
    eq: EntroQ,
    queue: str,
    needle: str,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Search:
    """Search the next ``SEARCH_SCAN`` tasks of ``queue`` (from ``after``) for ``needle``."""
    scan = app_settings().DASHBOARD_SEARCH_SCAN
    empty = TaskPage(tasks=[], older=None, newer=None)
    backend = eq.backend
    if not backend.supports_value_search:
        return Search(needle, empty, 0, problem="Searching values needs the database backend.")
    try:
        found, stopped = backend.search_values(
            queue,
            needle.encode(),
            after=after,
            scan=scan,
            limit=limit,
            timeout=app_settings().DASHBOARD_SEARCH_SECONDS,
        )
    except OperationalError as error:
        if not is_timeout(error):
            raise
        seconds = app_settings().DASHBOARD_SEARCH_SECONDS
        problem = f"The search took over {seconds} s and was stopped; narrow it down."
        return Search(needle, empty, scan, problem=problem)
    stop = wire.encode_bound(*stopped) if stopped else None
    full = len(found) >= limit
    return Search(needle, TaskPage(tasks=found, older=None, newer=None), scan, stop, full=full)
