"""API listings within a byte budget of values (``GET /api/v1/tasks``).

A listing of large values must not make the server hold them all: the tasks come
first without their values, then the sizes of their values from the database (which
knows them without reading them), then the values of as many as the budget takes, in
batches. The answer is written in pieces, each value a piece of its own, and says in
``next`` how to go on.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models.functions import Length

from queues.entroq import Backend, Task, TasksQuery, wire
from queues.models import Task as TaskRow

# Tasks whose value sizes one query reads.
SIZES_AT_ONCE = 1000


def answer(
    backend: Backend, query: TasksQuery, readable: Callable[[str], bool], budget: int
) -> list[bytes]:
    """Return the JSON answer to ``query`` in pieces: the tasks whose queues are
    ``readable``, with at most ``budget`` bytes of values (a task with more comes
    alone), and ``next`` when more tasks may match: the parameters that ask for them
    (``after`` or ``before`` for a queue's tasks, ``id`` for a lookup)."""
    # First the tasks without their values, one more than asked for to know whether
    # there are more; then the values of as many as the budget takes.
    listed = backend.tasks(
        dataclasses.replace(query, omit_values=True, limit=0 if query.ids else query.limit + 1)
    )
    more = len(listed) > query.limit and not query.ids
    listed = [t for t in listed[: query.limit] if readable(t.queue)]
    if query.omit_values:
        answered, covered = [_task_json(t) for t in listed], len(listed)
    else:
        answered, covered = _with_values(backend, query, listed, budget, readable)
    rest = listed[covered:]
    following: dict[str, Any] | None = None
    if query.ids and rest:
        following = {"id": [str(t.id) for t in rest]}
    elif not query.ids and covered and (rest or more):
        last = listed[covered - 1]
        following = {
            "before" if query.newest_first else "after": wire.encode_bound(last.at, last.id)
        }
    pieces = [b'{"tasks": [']
    for i, task_json in enumerate(answered):
        pieces += [b", "] if i else []
        pieces += task_json
    # Without "next", the answer is as before byte bounds: complete.
    pieces.append(
        b"]}" if following is None else b'], "next": ' + json.dumps(following).encode() + b"}"
    )
    return pieces


def _with_values(
    backend: Backend,
    query: TasksQuery,
    listed: list[Task],
    budget: int,
    readable: Callable[[str], bool],
) -> tuple[list[list[bytes]], int]:
    """Return the JSON of the first tasks of ``listed`` whose values, read anew, fit in
    ``budget`` bytes (at least one task), and how many of ``listed`` that answers for.

    The sizes of the values come first, from the database, and then the values in
    batches of about an eighth of the budget. A value read is cut to one byte more than
    the largest size its batch expects, so a value that grew meanwhile cannot make a
    batch large either: such a task ends the answer (or, first in it, is read alone).
    A task gone meanwhile, or no longer matching, is passed over.
    """
    sizes = _value_sizes(backend, [t.id for t in listed])
    planned: list[tuple[Task, int]] = []
    total = present = 0
    for candidate in listed:
        size = sizes.get(candidate.id)
        if size is not None:  # else gone meanwhile
            size = min(size, query.preview) if query.preview > 0 else size
            if present and total + size > budget:
                break
            total += size
            present += 1
        planned.append((candidate, size or 0))
    answered: list[list[bytes]] = []
    used = covered = 0
    for batch in _fetch_batches(planned, max(budget // 8, 64 * 1024)):
        # One more byte than expected: a longer value has changed meanwhile.
        cut = max(size for _, size in batch) + 1
        cut = min(cut, query.preview) if query.preview > 0 else cut
        fetched = {
            t.id: t
            for t in backend.tasks(
                dataclasses.replace(
                    query,
                    ids=tuple(t.id for t, _ in batch),
                    limit=0,
                    after=None,
                    before=None,
                    newest_first=False,
                    preview=cut,
                )
            )
        }
        for listed_task, _ in batch:
            task = fetched.pop(listed_task.id, None)
            if task is not None and len(task.value) >= cut and cut != query.preview:
                if answered:
                    return answered, covered  # changed meanwhile: the next page reads it
                task = _read_alone(backend, query, listed_task)
            if task is None or not readable(task.queue):
                covered += 1
                continue
            if answered and used + len(task.value) > budget:
                return answered, covered
            used += len(task.value)
            answered.append(_task_json(task))
            covered += 1
    return answered, covered


def _read_alone(backend: Backend, query: TasksQuery, task: Task) -> Task | None:
    """Return ``task`` with its whole value (or its preview), if it still matches."""
    found = backend.tasks(
        dataclasses.replace(
            query, ids=(task.id,), limit=0, after=None, before=None, newest_first=False
        )
    )
    return found[0] if found else None


def _fetch_batches(planned: list[tuple[Task, int]], most: int) -> Iterator[list[tuple[Task, int]]]:
    """Split ``planned`` (tasks and the sizes of their values) into runs that each read at
    most ``most`` bytes, counting every value of a run as long as its longest (a larger
    value is a run of its own)."""
    batch: list[tuple[Task, int]] = []
    longest = 0
    for task, size in planned:
        if batch and (len(batch) + 1) * (max(longest, size) + 1) > most:
            yield batch
            batch, longest = [], 0
        batch.append((task, size))
        longest = max(longest, size)
    if batch:
        yield batch


def _value_sizes(backend: Backend, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Return the length in bytes of the values of the tasks ``ids`` that exist.

    The database knows a value's length without reading it (PostgreSQL keeps it in
    the TOAST pointer of a large one).
    """
    using = getattr(backend, "using", DEFAULT_DB_ALIAS)
    sizes: dict[uuid.UUID, int] = {}
    for start in range(0, len(ids), SIZES_AT_ONCE):
        rows = (
            TaskRow.objects.using(using)
            .filter(id__in=ids[start : start + SIZES_AT_ONCE])
            .values_list("id", Length("value"))
        )
        sizes.update((task_id, int(size or 0)) for task_id, size in rows)
    return sizes


def _task_json(task: Task) -> list[bytes]:
    """Return the JSON of ``task`` in pieces, its value (base64) a piece of its own.

    Not ``json.dumps`` of the whole: that would hold the value as base64 text, then as
    JSON text, then as bytes, all at once.
    """
    fields = wire.encode_task(dataclasses.replace(task, value=b""))
    del fields["value"]
    head = json.dumps(fields)[:-1].encode()
    return [head, b', "value": "', base64.b64encode(task.value), b'"}']
