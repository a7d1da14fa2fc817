"""What ``DjangoBackend`` reads without changing: listings of tasks, queue stats, and
the dashboard's bounded search of values. Each is one statement, built here for
either database from what its dialect says."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction

from ..backend import QueuesQuery, TasksQuery
from ..tasks import QueueStat, Task
from .base import Dialect
from .sql import COLUMNS, COLUMNS_NO_VALUE, STATE_CONDITIONS, TASK_TABLE, prefix_range
from .timeouts import statement_timeout


def tasks(dialect: Dialect, query: TasksQuery) -> list[Task]:
    """Return the tasks ``query`` asks for (see ``Backend.tasks``)."""
    params = dialect.params()
    conditions = []
    if query.queue:
        conditions.append("queue = %(queue)s")
        params["queue"] = query.queue
    if query.ids:
        where, id_params = dialect.in_list("id", "id", [dialect.db_uuid(i) for i in query.ids])
        conditions.append(where)
        params.update(id_params)
    if query.claimant is not None:
        conditions.append(f"(at <= {dialect.now} OR claimant = %(claimant)s)")
        params["claimant"] = dialect.db_uuid(query.claimant)
    if query.state:
        conditions.append(STATE_CONDITIONS[query.state].format(now=dialect.now))
    if query.min_attempt:
        conditions.append("attempt >= %(min_attempt)s")
        params["min_attempt"] = query.min_attempt
    if query.omit_values:
        columns = COLUMNS_NO_VALUE
    elif query.preview > 0:
        columns = COLUMNS.replace("value", f"substr(value, 1, {int(query.preview)})")
    else:
        columns = COLUMNS
    if not query.ids:
        # Row values, so both databases walk the (queue, at, id) index from the bound.
        for name, bound, op in (("after", query.after, ">"), ("before", query.before, "<")):
            if bound is not None:
                conditions.append(f"(at, id) {op} (%({name}_at)s, %({name}_id)s)")
                params[f"{name}_at"] = dialect.db_time(bound[0])
                params[f"{name}_id"] = dialect.db_uuid(bound[1])
    sql = f"SELECT {columns} FROM {TASK_TABLE} WHERE {' AND '.join(conditions)}"
    if not query.ids:
        sql += " ORDER BY at DESC, id DESC" if query.newest_first else " ORDER BY at, id"
        if query.limit > 0:
            sql += f" LIMIT {int(query.limit)}"
    tasks = [dialect.row_to_task(row) for row in dialect.execute(sql, params)]
    if query.ids:
        by_id = {t.id: t for t in tasks}
        tasks = [by_id[i] for i in dict.fromkeys(query.ids) if i in by_id]
        if query.limit > 0:
            tasks = tasks[: query.limit]
    return tasks


def queue_stats(dialect: Dialect, query: QueuesQuery) -> dict[str, QueueStat]:
    """Return the stats of the queues ``query`` matches (see ``Backend.queue_stats``)."""
    params = dialect.params()
    matches = []
    if query.match_exact:
        where, exact = dialect.in_list("queue", "exact", list(query.match_exact))
        matches.append(where)
        params.update(exact)
    if "" in query.match_prefix:
        matches = []  # every queue
    elif query.match_prefix and dialect.sorts_by_code_point():
        # A range of the (queue, at, id) index, not a scan of it: the names that
        # start with a prefix are those from it up to the next name of its length.
        for i, prefix in enumerate(query.match_prefix):
            low, high = prefix_range(prefix)
            above = "" if high is None else f" AND queue < %(high{i})s"
            matches.append(f"(queue >= %(low{i})s{above})")
            params.update({f"low{i}": low, f"high{i}": high})
    else:
        for i, prefix in enumerate(query.match_prefix):
            # Not LIKE: it treats % and _ as wildcards, and ignores case on SQLite.
            matches.append(f"substr(queue, 1, length(%(p{i})s)) = %(p{i})s")
            params[f"p{i}"] = prefix
    sql = (
        f"SELECT queue, count(*), "
        f"sum(CASE WHEN at <= {dialect.now} THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN at > {dialect.now} AND claimant IS NOT NULL THEN 1 ELSE 0 END), "
        f"max(claims), min(at) FROM {TASK_TABLE}"
    )
    if matches:
        sql += f" WHERE {' OR '.join(matches)}"
    sql += f" GROUP BY queue ORDER BY {dialect.queue_order}"
    if query.limit > 0:
        sql += f" LIMIT {int(query.limit)}"
    stats = {}
    for name, size, available, claimed, max_claims, earliest in dialect.execute(sql, params):
        stats[name] = QueueStat(
            name=name,
            size=size,
            claimed=int(claimed),
            available=int(available),
            future=size - int(available) - int(claimed),
            max_claims=max_claims,
            earliest=dialect.read_time(earliest),
        )
    return stats


def search_values(
    dialect: Dialect,
    queue: str,
    needle: bytes,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    scan: int = 10_000,
    limit: int = 50,
    timeout: float = 2.0,
) -> tuple[list[Task], tuple[datetime, uuid.UUID] | None]:
    """Return tasks of ``queue`` whose value contains ``needle`` (values cut to 160
    bytes), reading no more than ``scan`` tasks after ``after`` in (at, id) order.

    Also return where the search stopped when it stopped early, at ``limit``
    matches or at ``scan`` tasks read (None when it read to the end of the queue).
    One statement reads the window, so what it reports is one snapshot. It runs
    under a ``statement_timeout`` of ``timeout`` seconds.
    """
    params = dialect.params()
    params.update(queue=queue, needle=needle, scan=int(scan) + 1)
    bound = ""
    if after is not None:
        bound = " AND (at, id) > (%(after_at)s, %(after_id)s)"
        params.update(after_at=dialect.db_time(after[0]), after_id=dialect.db_uuid(after[1]))
    hit = dialect.value_contains
    columns = COLUMNS.replace("value", "CASE WHEN hit THEN substr(value, 1, 160) END")
    sql = (
        f"SELECT {columns}, hit FROM (SELECT *, {hit} AS hit FROM {TASK_TABLE} "
        f"WHERE queue = %(queue)s{bound} ORDER BY at, id LIMIT %(scan)s) scanned "
        "ORDER BY at, id"
    )
    # A savepoint, so that a timeout leaves a caller's transaction usable.
    with transaction.atomic(using=dialect.using), statement_timeout(timeout, dialect.using):
        rows = dialect.execute(sql, params)
    more = len(rows) > scan
    found = []
    for row in rows[:scan]:
        if row[-1]:
            found.append(dialect.row_to_task(row[:-1]))
            if len(found) == limit:
                return found, (found[-1].at, found[-1].id)
    if not more:
        return found, None
    last = dialect.row_to_task(rows[scan - 1][:-1])
    return found, (last.at, last.id)
