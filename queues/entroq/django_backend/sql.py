"""The SQL both databases share: the task table, its columns, and the statements and
conditions written once for PostgreSQL and SQLite alike.

``queues.models`` (which owns the schema) and the benchmarks read the table's name and
the statements from here; what is written differently for each database lives in its
own module (``postgresql``, ``sqlite``).
"""

from __future__ import annotations

from typing import Any

from ..kinds import error_kind
from ..modify import TaskChange

TASK_TABLE = "entroq_task"
PAUSED_TABLE = "entroq_paused"
COLUMNS = "id, queue, version, at, claimant, claims, value, created, modified, attempt, err"
COLUMNS_NO_VALUE = COLUMNS.replace("value", "NULL")
STATE_CONDITIONS = {
    "available": "at <= {now}",
    "claimed": "at > {now} AND claimant IS NOT NULL",
    "future": "at > {now} AND claimant IS NULL",
}
# IDs a modification locks in one statement.
LOCK_BATCH = 1000
NOTIFY_CHANNEL = "entroq"

# Delete one task version unless another claimant holds it; ``{now}`` is the clock.
DELETE_ONE = (
    f"DELETE FROM {TASK_TABLE} WHERE id = %(id)s AND version = %(version)s "
    "AND (claimant IS NULL OR claimant = %(me)s OR at <= {now}) RETURNING queue"
)


def not_paused(queue: str, starts_with: str) -> str:
    """Return the condition that no pause covers the queue named by the SQL ``queue``;
    ``starts_with`` is the database's test that ``{text}`` starts with ``{start}``."""
    covered = starts_with.format(text=queue, start="p.name")
    return (
        f"NOT EXISTS (SELECT 1 FROM {PAUSED_TABLE} AS p "
        f"WHERE p.name = {queue} OR (p.prefix AND {covered}))"
    )


def changed_columns(change: TaskChange) -> dict[str, Any]:
    """Return the columns ``change`` writes, by name: only what it gives, so that an
    unchanged value (every renewal) is neither sent nor rewritten, and absent fields
    keep what is stored; an error brings its kind for triage."""
    fields: dict[str, Any] = {"queue": change.queue, "value": change.value}
    fields["attempt"] = change.attempt
    if change.err is not None:
        fields.update(err=change.err, err_kind=error_kind(change.err))
    return {column: new for column, new in fields.items() if new is not None}


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """Return the bounds ``[low, high)`` of the names that start with ``prefix`` in code
    point order (``high`` is None when no name is above them all)."""
    kept = prefix
    while kept:
        following = ord(kept[-1]) + 1
        if 0xD800 <= following <= 0xDFFF:  # surrogates are no characters of a name
            following = 0xE000
        if following <= 0x10FFFF:
            return prefix, kept[:-1] + chr(following)
        kept = kept[:-1]
    return prefix, None
