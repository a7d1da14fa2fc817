"""``EntroQ``, the client: claims, modifications, listings and lease renewal over a backend."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from .backend import (
    DEFAULT_CLAIM_DURATION,
    DEFAULT_CLAIM_POLL_TIME,
    MAX_CLAIM,
    Backend,
    ClaimQuery,
    ModifyOutcome,
    QueuesQuery,
    TasksQuery,
)
from .errors import DependencyError, default_err_qmap
from .leases import LeaseKeeper
from .modify import ModifyArg, changing, new_modification
from .pauses import Pause, check_claim_patterns, parse_all
from .tasks import (
    TASK_STATES,
    Duration,
    QueueStat,
    Task,
    as_uuid,
    aware_utc,
    check_queue,
    seconds,
)
from .worker import Worker


def _names(match: str | Iterable[str], label: str) -> tuple[str, ...]:
    if isinstance(match, str):
        return (match,)
    names = tuple(match)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{label} takes strings, not {type(name).__name__}")
    return names


def _queues_query(
    match_prefix: str | Iterable[str], match_exact: str | Iterable[str], limit: int
) -> QueuesQuery:
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    return QueuesQuery(
        match_prefix=_names(match_prefix, "match_prefix"),
        match_exact=_names(match_exact, "match_exact"),
        limit=limit,
    )


def _bound(
    bound: tuple[datetime, uuid.UUID] | None, name: str
) -> tuple[datetime, uuid.UUID] | None:
    if bound is None:
        return None
    try:
        at, id = bound
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an (at, id) pair") from None
    if not isinstance(id, uuid.UUID):  # a position, not a task: the nil UUID is one too
        id = as_uuid(id, f"{name} id")
    return aware_utc(at, f"{name} at"), id


class EntroQ:
    """A task queue client: one claimant ID over one backend.

    ``EntroQ()`` uses the project's database through ``DjangoBackend``.
    """

    def __init__(self, backend: Backend | None = None, *, claimant_id: uuid.UUID | None = None):
        if backend is None:
            from .django_backend import DjangoBackend

            backend = DjangoBackend()
        self.backend = backend
        bound = backend.bound_claimant()
        wanted = None if claimant_id is None else as_uuid(claimant_id, "claimant_id")
        if bound is not None and wanted not in (None, bound):
            raise ValueError(f"this backend acts as claimant {bound}, not {wanted}")
        self._id = bound or wanted or uuid.uuid4()

    @property
    def id(self) -> uuid.UUID:
        """The default claimant ID of this client."""
        return self._id

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> EntroQ:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EntroQ {self._id} on {type(self.backend).__name__}>"

    # Claims.

    def _claim_query(
        self,
        queues: Sequence[str],
        duration: Duration,
        poll_time: Duration,
        claimant: uuid.UUID | None,
        limit: int = 1,
    ) -> ClaimQuery:
        if not queues:
            raise ValueError("claim needs at least one queue")
        for queue in queues:
            check_queue(queue)
        check_claim_patterns(queues)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIM:
            raise ValueError(f"limit must be an int from 1 to {MAX_CLAIM}, got {limit!r}")
        return ClaimQuery(
            queues=tuple(dict.fromkeys(queues)),
            claimant=self._id if claimant is None else as_uuid(claimant, "claimant"),
            duration=seconds(duration, "duration"),
            poll_time=seconds(poll_time, "poll_time"),
            limit=limit,
        )

    def try_claim(
        self,
        *queues: str,
        duration: Duration = DEFAULT_CLAIM_DURATION,
        claimant: uuid.UUID | None = None,
    ) -> Task | None:
        """Claim a task from one of ``queues`` for ``duration``, or return ``None`` at once."""
        return self.backend.try_claim(
            self._claim_query(queues, duration, DEFAULT_CLAIM_POLL_TIME, claimant)
        )

    def claim(
        self,
        *queues: str,
        duration: Duration = DEFAULT_CLAIM_DURATION,
        poll_time: Duration = DEFAULT_CLAIM_POLL_TIME,
        timeout: Duration | None = None,
        claimant: uuid.UUID | None = None,
        stop: threading.Event | None = None,
    ) -> Task:
        """Claim a task, waiting for one; raise ``ClaimTimeout`` once ``timeout`` passes
        or ``stop`` is set."""
        query = self._claim_query(queues, duration, poll_time, claimant)
        if query.poll_time <= 0:
            raise ValueError("poll_time must be positive")
        wait = None if timeout is None else seconds(timeout, "timeout")
        return self.backend.claim(query, timeout=wait, stop=stop)

    def try_claim_many(
        self,
        *queues: str,
        limit: int,
        duration: Duration = DEFAULT_CLAIM_DURATION,
        claimant: uuid.UUID | None = None,
    ) -> list[Task]:
        """Claim up to ``limit`` tasks from ``queues``, each for ``duration`` with its own
        version and lease; return them (``[]`` at once if none is available).

        Fair across the queues and random within each, as ``try_claim`` is; on the
        database backends one statement claims them all.
        """
        return self.backend.try_claim_many(
            self._claim_query(queues, duration, DEFAULT_CLAIM_POLL_TIME, claimant, limit)
        )

    def claim_many(
        self,
        *queues: str,
        limit: int,
        duration: Duration = DEFAULT_CLAIM_DURATION,
        poll_time: Duration = DEFAULT_CLAIM_POLL_TIME,
        timeout: Duration | None = None,
        claimant: uuid.UUID | None = None,
        stop: threading.Event | None = None,
    ) -> list[Task]:
        """Wait until at least one task can be claimed; claim up to ``limit`` (see
        ``try_claim_many``). Raise ``ClaimTimeout`` once ``timeout`` passes or ``stop``
        is set."""
        query = self._claim_query(queues, duration, poll_time, claimant, limit)
        if query.poll_time <= 0:
            raise ValueError("poll_time must be positive")
        wait = None if timeout is None else seconds(timeout, "timeout")
        return self.backend.claim_many(query, timeout=wait, stop=stop)

    # Modifications.

    def modify(
        self, *args: ModifyArg, claimant: uuid.UUID | None = None
    ) -> tuple[list[Task], list[Task]]:
        """Apply all ``args`` or none; return the inserted and changed tasks in request order.

        Raise ``DependencyError`` with every problem. Inserts marked ``skip_colliding``
        whose IDs exist already are dropped when they are the only problem.
        """
        who = self._id if claimant is None else as_uuid(claimant, "claimant")
        mod = new_modification(who, *args)
        mod.check(self.backend.max_value_bytes)
        while True:
            try:
                return self.backend.modify(mod)
            except DependencyError as error:
                skippable = {d.id for d in mod.inserts if d.skip_colliding}
                colliding = {i.id for i in error.inserts}
                only_collisions = not (error.has_missing() or error.has_claims())
                if not (only_collisions and colliding and colliding <= skippable):
                    raise
                mod = mod.without_inserts(colliding)

    def modify_each(
        self, *groups: Sequence[ModifyArg], claimant: uuid.UUID | None = None
    ) -> list[ModifyOutcome]:
        """Apply each group of modify arguments all or nothing on its own, together
        where the backend can (finished tasks' deletions: one statement and one
        commit); return, in order, each one's ``(inserted, changed)`` or the
        ``DependencyError`` or ``ValueError`` that refused it, which fails no other.

        ``skip_colliding`` inserts are not retried without their collisions here.
        """
        who = self._id if claimant is None else as_uuid(claimant, "claimant")
        return self.backend.modify_each([new_modification(who, *group) for group in groups])

    # Listings.

    def tasks(
        self,
        queue: str = "",
        *,
        claimant: uuid.UUID | None = None,
        limit: int = 0,
        ids: Iterable[uuid.UUID] = (),
        omit_values: bool = False,
        state: str = "",
        min_attempt: int = 0,
        newest_first: bool = False,
        after: tuple[datetime, uuid.UUID] | None = None,
        before: tuple[datetime, uuid.UUID] | None = None,
        preview: int = 0,
    ) -> list[Task]:
        """Return the tasks of ``queue`` (or the tasks ``ids``, in that order).

        Browsing options (see ``TasksQuery``): ``state`` (``"available"``, ``"claimed"``
        or ``"future"``), ``min_attempt``, ``newest_first``, the keyset bounds ``after``
        and ``before`` as ``(at, id)`` pairs, and ``preview`` to cut values to so many
        bytes.
        """
        wanted = tuple(as_uuid(i) for i in ids)
        if queue:
            check_queue(queue)
        elif not wanted:
            raise ValueError("tasks needs a queue, or ids to look up across queues")
        for name, number in (("limit", limit), ("min_attempt", min_attempt), ("preview", preview)):
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise ValueError(f"{name} must be a non-negative int, got {number!r}")
        if state and state not in TASK_STATES:
            raise ValueError(f"state must be one of {', '.join(TASK_STATES)}, got {state!r}")
        return self.backend.tasks(
            TasksQuery(
                queue=queue,
                claimant=None if claimant is None else as_uuid(claimant, "claimant"),
                limit=limit,
                ids=wanted,
                omit_values=omit_values,
                state=state,
                min_attempt=min_attempt,
                newest_first=bool(newest_first),
                after=_bound(after, "after"),
                before=_bound(before, "before"),
                preview=preview,
            )
        )

    def queues(
        self,
        *,
        match_prefix: str | Iterable[str] = (),
        match_exact: str | Iterable[str] = (),
        limit: int = 0,
    ) -> dict[str, int]:
        """Return the size of each matching queue."""
        return self.backend.queues(_queues_query(match_prefix, match_exact, limit))

    def queue_stats(
        self,
        *,
        match_prefix: str | Iterable[str] = (),
        match_exact: str | Iterable[str] = (),
        limit: int = 0,
    ) -> dict[str, QueueStat]:
        """Return the stats of each matching queue."""
        return self.backend.queue_stats(_queues_query(match_prefix, match_exact, limit))

    def queues_empty(
        self, *, match_prefix: str | Iterable[str] = (), match_exact: str | Iterable[str] = ()
    ) -> bool:
        """Return whether every matching queue is empty; a match is required."""
        query = _queues_query(match_prefix, match_exact, 0)
        if not (query.match_prefix or query.match_exact):
            raise ValueError("queues_empty needs match_prefix or match_exact")
        return not self.backend.queues(query)

    def wait_queues_empty(
        self,
        *,
        timeout: Duration | None = None,
        poll: Duration = 2,
        match_prefix: str | Iterable[str] = (),
        match_exact: str | Iterable[str] = (),
    ) -> None:
        """Block until every matching queue is empty; ``TimeoutError`` after ``timeout``."""
        interval = seconds(poll, "poll")
        deadline = None if timeout is None else time.monotonic() + seconds(timeout, "timeout")
        while not self.queues_empty(match_prefix=match_prefix, match_exact=match_exact):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"queues not empty after {timeout} s")
            left = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(left, 0))

    def time(self) -> datetime:
        """Return the backend's clock."""
        return self.backend.time()

    def new_worker(
        self,
        *queues: str,
        lease: Duration = 30,
        err_qmap: Callable[[str], str] = default_err_qmap,
        on_dependency_error: Callable[[DependencyError], None] | None = None,
        max_attempts: int = 0,
        retry_delay: Duration = 30,
    ) -> Worker:
        """Return a worker that claims from ``queues`` with this client's claimant ID."""
        for queue in queues:
            check_queue(queue)
        return Worker(
            self,
            queues,
            lease=lease,
            err_qmap=err_qmap,
            on_dependency_error=on_dependency_error,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
        )

    # Pauses.

    def pause(self, *queues: str) -> list[Pause]:
        """Pause claims from ``queues``: a name, ``prefix/*`` (every queue under the
        prefix, created later or not) or ``*`` (every queue). Return the pauses that
        were not in force already. Tasks go on being inserted, listed and changed."""
        return self.backend.pause(parse_all(queues))

    def resume(self, *queues: str) -> list[Pause]:
        """End the pauses ``queues`` name (as they were given to ``pause``: resuming one
        queue does not end a pause of its prefix); return those that were in force.
        Claims waiting on what they covered try again at once."""
        return self.backend.resume(parse_all(queues))

    def paused(self) -> list[Pause]:
        """Return the pauses in force."""
        return self.backend.paused()

    # Leases.

    def renew_for(self, task: Task, duration: Duration) -> Task:
        """Extend the claim on ``task`` to ``duration`` from now; return the renewed task."""
        return self.renew_all_for([task], duration)[0]

    def renew_all_for(self, tasks: Sequence[Task], duration: Duration) -> list[Task]:
        """Extend the claims on all ``tasks`` in one modification, to ``duration`` after
        the store's clock (not this process's: a client whose clock is off still renews).

        Raise ``DependencyError`` when a task is no longer held at its version.
        """
        lease = seconds(duration, "duration")
        if lease <= 0:
            raise ValueError("a renewal needs a positive duration (0 s would release the task)")
        if not tasks:
            return []
        _, changed = self.modify(*(changing(t, arrival_in=lease) for t in tasks))
        return changed

    def do_with_renew(self, task: Task, lease: Duration, fn: Callable[[], Any]) -> Task:
        """Run ``fn()`` while renewing ``task`` every ``lease / 2``; return the final task."""
        return self.do_with_renew_all([task], lease, fn)[0]

    def do_with_renew_all(
        self, tasks: Sequence[Task], lease: Duration, fn: Callable[[], Any]
    ) -> list[Task]:
        """Run ``fn()`` in this thread while a background thread renews ``tasks``.

        Returns the tasks at their final versions, to use in the modification that
        finishes the work. A failed renewal (the lease was lost) is raised here once
        ``fn`` returns; an exception from ``fn`` wins over it.
        """
        period = seconds(lease, "lease")
        if period <= 0:
            raise ValueError("lease must be positive")
        keeper = LeaseKeeper(self, period)
        keeper.hold(list(tasks))
        try:
            fn()
        except BaseException:
            keeper.release(raise_error=False)
            raise
        finally:
            keeper.close()
        return keeper.release()
