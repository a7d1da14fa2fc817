"""The ``Backend`` interface that stores tasks, and what backends share.

A backend implements the storage half of EntroQ (the seed's ``Backend``): claims,
all-or-nothing modifications, listings and the clock. ``EntroQ`` adds everything a
client needs on top. To write a backend, subclass :class:`Backend` and implement the
abstract methods; override :meth:`Backend.subscribe` and
:meth:`Backend.seconds_until_arrival` to make blocking claims wake promptly instead of
polling. The shared test suite in ``tests/entroq/test_backends.py`` states the semantics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from .errors import ClaimTimeout, DependencyError
from .modify import Modification
from .pauses import EVERY_QUEUE_NOTE, Pause, claimed_under, split_patterns
from .tasks import DEFAULT_MAX_VALUE_BYTES, QueueStat, Task

DEFAULT_CLAIM_DURATION = 30.0
DEFAULT_CLAIM_POLL_TIME = 30.0
# What ``Backend.modify_each`` answers for one modification: its inserted and changed
# tasks, or why it was refused.
ModifyOutcome = tuple[list[Task], list[Task]] | DependencyError | ValueError

# The most tasks one batched claim takes.
MAX_CLAIM = 1000
# Claims pick at random among this many of the oldest available tasks of a queue:
# close to first in, first out, yet a task that crashes its workers cannot block the head.
CLAIM_CANDIDATES = 16


@dataclass(frozen=True, slots=True)
class ClaimQuery:
    """A claim of one task (up to ``limit`` tasks, for ``try_claim_many`` and
    ``claim_many``) from any of ``queues`` for ``duration`` seconds.

    A queue ``prefix/*`` is every queue under the prefix, and ``*`` every queue (see
    ``pauses.split_patterns``): each of those with tasks has the chance a named one has.
    """

    queues: tuple[str, ...]
    claimant: uuid.UUID
    duration: float = DEFAULT_CLAIM_DURATION
    poll_time: float = DEFAULT_CLAIM_POLL_TIME
    limit: int = 1


@dataclass(frozen=True, slots=True)
class TasksQuery:
    """A listing of tasks.

    ``queue`` may be empty only when ``ids`` are given. ``claimant`` limits the result
    to tasks it holds or whose claim has expired. ``limit <= 0`` means no limit. The
    fields after ``omit_values`` extend Go's query for browsing (the dashboard); a
    lookup by ``ids`` ignores the order and the bounds.
    """

    queue: str = ""
    claimant: uuid.UUID | None = None
    limit: int = 0
    ids: tuple[uuid.UUID, ...] = ()
    omit_values: bool = False
    #: Only tasks in this state: ``"available"``, ``"claimed"`` or ``"future"``.
    state: str = ""
    #: Only tasks whose ``attempt`` is at least this.
    min_attempt: int = 0
    #: Order by ``at`` then ``id`` descending instead of ascending.
    newest_first: bool = False
    #: Keyset bounds: only tasks whose ``(at, id)`` is strictly after / before these,
    #: whatever the order, so listings page through millions of tasks without OFFSET.
    after: tuple[datetime, uuid.UUID] | None = None
    before: tuple[datetime, uuid.UUID] | None = None
    #: When positive, each value is cut to its first ``preview`` bytes.
    preview: int = 0


@dataclass(frozen=True, slots=True)
class QueuesQuery:
    """A selection of queues: any prefix or exact match (all queues when both are empty)."""

    match_prefix: tuple[str, ...] = ()
    match_exact: tuple[str, ...] = ()
    limit: int = 0

    def matches(self, queue: str) -> bool:
        if not (self.match_prefix or self.match_exact):
            return True
        return queue in self.match_exact or any(queue.startswith(p) for p in self.match_prefix)


class Notifier:
    """In-process wake-ups keyed by queue name.

    A blocking claim subscribes to its queues *before* it tries to claim, so a
    notification that arrives between an empty try and the wait is never lost.
    Every subscriber of a queue is woken: the claim that loses the race goes back
    to waiting, which is cheaper than a wake-up that goes missing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        # Claims over a prefix (``billing/*``), by prefix: few, so each is checked.
        self._prefix_waiters: dict[str, set[threading.Event]] = {}

    @contextlib.contextmanager
    def subscribe(self, queues: Iterable[str]) -> Iterator[threading.Event]:
        """Yield an event set when one of ``queues`` (names or ``prefix/*``) is notified."""
        event = threading.Event()
        names, prefixes = split_patterns(set(queues))
        keyed = [(self._waiters, names), (self._prefix_waiters, prefixes)]
        with self._lock:
            for waiters, keys in keyed:
                for key in keys:
                    waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                for waiters, keys in keyed:
                    for key in keys:
                        found = waiters.get(key)
                        if found is not None:
                            found.discard(event)
                            if not found:
                                del waiters[key]

    def notify(self, queues: Iterable[str]) -> None:
        """Wake the waiters of ``queues``; every waiter if one is ``EVERY_QUEUE_NOTE``."""
        names = set(queues)
        if EVERY_QUEUE_NOTE in names:
            self.notify_all()
            return
        with self._lock:
            events = [e for q in names for e in self._waiters.get(q, ())]
            for prefix, waiters in self._prefix_waiters.items():
                if any(claimed_under(q, [prefix]) for q in names):
                    events.extend(waiters)
        for event in events:
            event.set()

    def notify_all(self) -> None:
        with self._lock:
            events = [
                e
                for keyed in (self._waiters, self._prefix_waiters)
                for waiters in keyed.values()
                for e in waiters
            ]
        for event in events:
            event.set()


def claim_in_turns(claim: Callable[[ClaimQuery], Task | None], query: ClaimQuery) -> list[Task]:
    """Claim up to ``query.limit`` tasks with ``claim``, one at a time, taking turns
    across the queues (in a random order) until the limit or until all are empty."""
    queues = list(query.queues)
    random.shuffle(queues)
    claimed: list[Task] = []
    while queues and len(claimed) < query.limit:
        for queue in list(queues):
            task = claim(dataclasses.replace(query, queues=(queue,), limit=1))
            if task is None:
                queues.remove(queue)
                continue
            claimed.append(task)
            if len(claimed) == query.limit:
                break
    return claimed


def _wait(woken: threading.Event, seconds: float, stop: threading.Event | None) -> None:
    """Wait until ``woken`` is set or ``seconds`` pass; raise ``ClaimTimeout`` on ``stop``."""
    if stop is None:
        woken.wait(seconds)
        return
    end = time.monotonic() + seconds
    # A stop is noticed within a quarter second without touching the store.
    while not stop.is_set():
        remaining = end - time.monotonic()
        if remaining <= 0 or woken.wait(min(remaining, 0.25)):
            return
    raise ClaimTimeout("claim stopped")


class Backend(ABC):
    """Where tasks live. Every method may be called from several threads at once."""

    #: The largest value, in bytes, this backend stores.
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    #: Whether ``search_values`` works (a bounded scan of values needs the database).
    supports_value_search: bool = False

    @abstractmethod
    def try_claim(self, query: ClaimQuery) -> Task | None:
        """Claim an available task from one of the queues, or return ``None`` at once."""

    @abstractmethod
    def modify(self, mod: Modification) -> tuple[list[Task], list[Task]]:
        """Apply ``mod`` all or nothing and return the inserted and changed tasks.

        Raise ``DependencyError`` listing every problem when it cannot proceed, and
        ``ValueError`` (before touching anything) when it is malformed.
        """

    def modify_each(self, mods: Sequence[Modification]) -> list[ModifyOutcome]:
        """Apply each of ``mods`` all or nothing on its own; return, in order, each one's
        inserted and changed tasks or the error that refused it (``DependencyError``,
        ``ValueError``), so that one refused modification fails no other.

        The default applies them one at a time; backends override it to apply what
        they can together (the database backends delete finished tasks in one step).
        """
        outcomes: list[ModifyOutcome] = []
        for mod in mods:
            try:
                outcomes.append(self.modify(mod))
            except (DependencyError, ValueError) as error:
                outcomes.append(error)
        return outcomes

    @abstractmethod
    def tasks(self, query: TasksQuery) -> list[Task]:
        """Return tasks of a queue ordered by ``at`` then ``id``, or by ``query.ids``.

        Honour every field of ``query``; ``EntroQ.tasks`` has validated them.
        """

    @abstractmethod
    def queue_stats(self, query: QueuesQuery) -> dict[str, QueueStat]:
        """Return the stats of the matching non-empty queues, in name order."""

    @abstractmethod
    def time(self) -> datetime:
        """Return the backend's clock, in UTC."""

    def bound_claimant(self) -> uuid.UUID | None:
        """Return the claimant ID this backend acts as whatever a client says, if any.

        ``HTTPBackend`` returns its token's; ``EntroQ`` then takes it as its own.
        """
        return None

    def queues(self, query: QueuesQuery) -> dict[str, int]:
        """Return the sizes of the matching non-empty queues."""
        return {name: stat.size for name, stat in self.queue_stats(query).items()}

    def try_claim_many(self, query: ClaimQuery) -> list[Task]:
        """Claim up to ``query.limit`` available tasks, each with its own version and
        lease, or return ``[]`` at once; fair across the queues as single claims are.

        The default claims one at a time; backends override it to claim in one step.
        """
        return claim_in_turns(self.try_claim, query)

    def claim(
        self,
        query: ClaimQuery,
        timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> Task:
        """Block until a task is claimed; raise ``ClaimTimeout`` after ``timeout`` seconds
        or as soon as ``stop`` is set (see ``claim_many``)."""
        return self.claim_many(dataclasses.replace(query, limit=1), timeout, stop)[0]

    def claim_many(
        self,
        query: ClaimQuery,
        timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> list[Task]:
        """Block until at least one task is claimed; return up to ``query.limit`` of them.

        Raise ``ClaimTimeout`` after ``timeout`` seconds or as soon as ``stop`` is set.
        Tries again when a subscribed queue is notified, when the earliest task of the
        queues is due, and every ``query.poll_time`` seconds at the latest.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        lost = 0  # tries in a row that found a due task but did not win it
        with self.subscribe(query.queues) as woken:
            while True:
                woken.clear()
                tasks, arrival = self.try_claim_or_arrival(query)
                if tasks:
                    return tasks
                wait = query.poll_time
                if arrival is not None and arrival <= 0:
                    # Due but not won: others claimed it first, or a transaction holds
                    # it. Try again soon, backing off while that goes on.
                    lost += 1
                    wait = min(wait, 0.01 * 2 ** min(lost, 7))
                elif arrival is not None:
                    lost = 0
                    wait = min(wait, arrival)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ClaimTimeout(
                            f"no task in {', '.join(query.queues)} after {timeout} s"
                        )
                    wait = min(wait, remaining)
                _wait(woken, wait, stop)

    def try_claim_or_arrival(self, query: ClaimQuery) -> tuple[list[Task], float | None]:
        """Try to claim up to ``query.limit`` tasks; when none is claimed, also return
        ``seconds_until_arrival``.

        Override to answer both in fewer round trips than the two calls.
        """
        tasks = self.try_claim_many(query)
        return tasks, None if tasks else self.seconds_until_arrival(query.queues)

    @contextlib.contextmanager
    def subscribe(self, queues: Iterable[str]) -> Iterator[threading.Event]:
        """Yield an event that is set when a task may have become available in ``queues``.

        The default never sets it, so blocking claims poll.
        """
        yield threading.Event()

    def seconds_until_arrival(self, queues: Iterable[str]) -> float | None:
        """Return how long until the earliest task of ``queues`` arrives, if known.

        Claimed tasks count: their ``at`` is when the claim expires.
        """
        return None

    def search_values(
        self,
        queue: str,
        needle: bytes,
        *,
        after: tuple[datetime, uuid.UUID] | None = None,
        scan: int = 10_000,
        limit: int = 50,
        timeout: float = 2.0,
    ) -> tuple[list[Task], tuple[datetime, uuid.UUID] | None]:
        """Return tasks of ``queue`` whose value contains ``needle`` (values cut to 160
        bytes), reading no more than ``scan`` tasks after ``after`` in (at, id) order,
        and where the search stopped when it stopped early (see ``DjangoBackend``).

        Only backends that declare ``supports_value_search`` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot search values")

    # Pauses (see ``queues.entroq.pauses``).

    def pause(self, pauses: Sequence[Pause]) -> list[Pause]:
        """Stop claims from taking tasks of the queues ``pauses`` cover; return those
        that were not paused already."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause queues")

    def resume(self, pauses: Sequence[Pause]) -> list[Pause]:
        """End ``pauses`` (each as it was given to ``pause``) and wake the claims waiting
        on what they covered; return those that were paused."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause queues")

    def paused(self) -> list[Pause]:
        """Return the pauses in force, in order."""
        return []

    def in_transaction(self) -> bool:
        """Return whether the calling thread is inside a transaction of this backend."""
        return False

    def release_thread(self) -> None:  # noqa: B027 (an optional hook)
        """Release what the calling thread holds (such as a database connection)."""

    def close(self) -> None:  # noqa: B027 (an optional hook)
        """Release the backend's resources."""
