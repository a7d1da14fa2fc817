"""``MemoryBackend``: tasks in a dict, for tests and for embedding in one process."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import random
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from .backend import (
    CLAIM_CANDIDATES,
    Backend,
    ClaimQuery,
    Notifier,
    QueuesQuery,
    TasksQuery,
    claim_in_turns,
)
from .errors import DependencyError
from .modify import Modification, inserted_task
from .pauses import Pause, check_pause_count, claimed_under, split_patterns, unpaused
from .tasks import DEFAULT_MAX_VALUE_BYTES, QueueStat, Task, utcnow


class MemoryBackend(Backend):
    """A thread-safe in-process task store with the semantics of every other backend.

    Blocking claims wake as soon as another thread inserts or changes a task in
    one of their queues.
    """

    def __init__(self, *, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        self.max_value_bytes = max_value_bytes
        self._lock = threading.Lock()
        self._tasks: dict[uuid.UUID, Task] = {}
        self._queues: dict[str, dict[uuid.UUID, Task]] = {}
        self._paused: set[Pause] = set()
        self._notifier = Notifier()

    def time(self) -> datetime:
        return utcnow()

    def _put(self, task: Task) -> None:
        old = self._tasks.get(task.id)
        if old is not None and old.queue != task.queue:
            self._remove(old)
        self._tasks[task.id] = task
        self._queues.setdefault(task.queue, {})[task.id] = task

    def _remove(self, task: Task) -> None:
        del self._tasks[task.id]
        queue = self._queues[task.queue]
        del queue[task.id]
        if not queue:
            del self._queues[task.queue]

    def try_claim(self, query: ClaimQuery) -> Task | None:
        with self._lock:
            now = self.time()
            queues = [q for q in self._named(query.queues) if q in self._queues]
            random.shuffle(queues)
            for queue in queues:
                available = (t for t in self._queues[queue].values() if t.at <= now)
                candidates = heapq.nsmallest(CLAIM_CANDIDATES, available, key=lambda t: t.at)
                if candidates:
                    task = random.choice(candidates)
                    claimed = dataclasses.replace(
                        task,
                        version=task.version + 1,
                        claims=task.claims + 1,
                        claimant=query.claimant,
                        at=now + timedelta(seconds=query.duration),
                        modified=now,
                    )
                    self._put(claimed)
                    return claimed
            return None

    def modify(self, mod: Modification) -> tuple[list[Task], list[Task]]:
        mod.check(self.max_value_bytes)
        with self._lock:
            now = self.time()
            found: dict[uuid.UUID, tuple[int, bool]] = {}
            for task_id in mod.referenced_ids():
                task = self._tasks.get(task_id)
                if task is not None:
                    held = task.at > now and task.claimant not in (None, mod.claimant)
                    found[task_id] = (task.version, held)
            error = mod.dependency_error(found)
            if error is not None:
                raise error
            for deletion in mod.deletes:
                self._remove(self._tasks[deletion.id])
            changed = []
            for change in mod.changes:
                old = self._tasks[change.id]
                at = change.arrival(now)
                task = dataclasses.replace(
                    old,
                    version=old.version + 1,
                    queue=old.queue if change.queue is None else change.queue,
                    value=old.value if change.value is None else change.value,
                    at=at,
                    claimant=mod.claimant if at > now else None,
                    attempt=old.attempt if change.attempt is None else change.attempt,
                    err=old.err if change.err is None else change.err,
                    modified=now,
                )
                self._put(task)
                known = change.answered_value()
                changed.append(task if known is None else dataclasses.replace(task, value=known))
            inserted = []
            for data in mod.inserts:
                task = inserted_task(data, mod.claimant, now)
                if task.id in self._tasks:  # a generated ID collided: astronomically rare
                    raise DependencyError(inserts=[task.id_version()])
                self._put(task)
                inserted.append(task)
        self._notifier.notify({t.queue for t in inserted} | {t.queue for t in changed})
        return inserted, changed

    def tasks(self, query: TasksQuery) -> list[Task]:
        with self._lock:
            now = self.time()
            if query.ids:
                found = (self._tasks.get(i) for i in dict.fromkeys(query.ids))
                tasks = [t for t in found if t and (not query.queue or t.queue == query.queue)]
            else:
                tasks = sorted(
                    self._queues.get(query.queue, {}).values(),
                    key=_position,
                    reverse=query.newest_first,
                )
                if query.after is not None:
                    tasks = [t for t in tasks if _position(t) > _key(query.after)]
                if query.before is not None:
                    tasks = [t for t in tasks if _position(t) < _key(query.before)]
        if query.claimant is not None:
            tasks = [t for t in tasks if t.at <= now or t.claimant == query.claimant]
        if query.state:
            tasks = [t for t in tasks if t.state(now) == query.state]
        if query.min_attempt:
            tasks = [t for t in tasks if t.attempt >= query.min_attempt]
        if query.limit > 0:
            tasks = tasks[: query.limit]
        if query.omit_values:
            tasks = [t.copy_omit_value() for t in tasks]
        elif query.preview > 0:
            tasks = [dataclasses.replace(t, value=t.value[: query.preview]) for t in tasks]
        return tasks

    def queue_stats(self, query: QueuesQuery) -> dict[str, QueueStat]:
        stats = {}
        with self._lock:
            now = self.time()
            for name in sorted(self._queues):
                if not query.matches(name):
                    continue
                tasks = self._queues[name].values()
                available = sum(1 for t in tasks if t.at <= now)
                claimed = sum(1 for t in tasks if t.at > now and t.claimant is not None)
                stats[name] = QueueStat(
                    name=name,
                    size=len(tasks),
                    claimed=claimed,
                    available=available,
                    future=len(tasks) - available - claimed,
                    max_claims=max(t.claims for t in tasks),
                    earliest=min(t.at for t in tasks),
                )
                if query.limit > 0 and len(stats) >= query.limit:
                    break
        return stats

    @contextlib.contextmanager
    def subscribe(self, queues: Iterable[str]) -> Iterator[threading.Event]:
        with self._notifier.subscribe(queues) as event:
            yield event

    def seconds_until_arrival(self, queues: Iterable[str]) -> float | None:
        with self._lock:
            now = self.time()
            arrivals = [t.at for q in self._named(queues) for t in self._queues.get(q, {}).values()]
        return (min(arrivals) - now).total_seconds() if arrivals else None

    def try_claim_many(self, query: ClaimQuery) -> list[Task]:
        # Turns across the queues under a prefix, not across the prefixes.
        with self._lock:
            named = self._named(query.queues)
        return claim_in_turns(self.try_claim, dataclasses.replace(query, queues=named))

    def _named(self, queues: Iterable[str]) -> tuple[str, ...]:
        """Return the queues ``queues`` name (prefixes included) that no pause covers."""
        names, prefixes = split_patterns(queues)
        if prefixes:
            names += [q for q in self._queues if claimed_under(q, prefixes)]
        return unpaused(list(dict.fromkeys(names)), self._paused)

    def pause(self, pauses: Sequence[Pause]) -> list[Pause]:
        with self._lock:
            now = self.time()
            added = [
                dataclasses.replace(p, since=now)
                for p in dict.fromkeys(pauses)
                if p not in self._paused
            ]
            check_pause_count(len(self._paused) + len(added))
            self._paused.update(added)
        return added

    def resume(self, pauses: Sequence[Pause]) -> list[Pause]:
        with self._lock:
            held = {p: p for p in self._paused}
            ended = [held[p] for p in dict.fromkeys(pauses) if p in held]
            self._paused.difference_update(ended)
        if ended:
            self._notifier.notify_all()
        return ended

    def paused(self) -> list[Pause]:
        with self._lock:
            return sorted(self._paused)


def _position(task: Task) -> tuple[datetime, int]:
    return task.at, task.id.int


def _key(bound: tuple[datetime, uuid.UUID]) -> tuple[datetime, int]:
    return bound[0], bound[1].int
