"""Claims ahead and acknowledgements together, for the workers of one process.

``Prefetcher`` claims up to ``size`` tasks in one statement and hands them to worker
threads one at a time, renewing those that wait; ``Acks`` applies finished tasks'
final modifications together, one statement and one commit for a group. Both keep
EntroQ's guarantees: every task has its own version and lease, and a process that
dies loses nothing (what it held comes back when the leases lapse).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from .backend import Backend, ModifyOutcome
from .errors import BackendUnavailable, ClaimTimeout, DependencyError
from .leases import LeaseClient
from .modify import Modification, new_modification
from .tasks import Duration, Task

logger = logging.getLogger(__name__)

Acknowledged = Callable[[ModifyOutcome | BackendUnavailable], None]


class PrefetchClient(LeaseClient, Protocol):
    """What a ``Prefetcher`` uses of its client, an ``EntroQ``."""

    def try_claim_many(self, *queues: str, limit: int, duration: Duration = ...) -> list[Task]: ...

    def claim_many(
        self,
        *queues: str,
        limit: int,
        duration: Duration = ...,
        stop: threading.Event | None = ...,
    ) -> list[Task]: ...


@dataclasses.dataclass
class _Waiting:
    task: Task
    renewed: float  # time.monotonic() of its claim or latest renewal


class Prefetcher:
    """Holds up to ``size`` claimed tasks for the workers of a process.

    A worker thread ``take``s a task, runs it, and says ``finished``; the prefetcher
    claims what is missing (``size`` less what waits and what runs) in one batch when
    nothing waits. Tasks that wait are renewed every ``lease / 2`` by a thread of its
    own, so a long run of one cannot let the others' leases lapse; ``close`` gives
    back those never started.
    """

    def __init__(
        self, client: PrefetchClient, queues: Sequence[str], *, size: int, lease: float
    ) -> None:
        if size < 1:
            raise ValueError(f"prefetch size must be at least 1, got {size}")
        self.client = client
        self.queues = tuple(queues)
        self.size = size
        self.lease = lease
        self._waiting: deque[_Waiting] = deque()
        self._running = 0
        self._claiming = False
        self._exhausted = False
        self._closed = False
        self._cond = threading.Condition()
        self._renewer = threading.Thread(
            target=self._renew_loop, name="entroq-prefetch", daemon=True
        )
        self._renewer.start()

    def take(self, stop: threading.Event, until_empty: bool = False) -> Task | None:
        """Return the next task to run, claiming a batch when none waits; ``None`` once
        ``stop`` is set (or, ``until_empty``, once the queues have nothing to claim)."""
        with self._cond:
            while True:
                if stop.is_set() or self._closed:
                    return None
                if self._waiting:
                    self._running += 1
                    return self._waiting.popleft().task
                if until_empty and self._exhausted:
                    return None
                if not self._claiming:
                    break
                self._cond.wait(0.25)
            self._claiming = True
            want = max(1, self.size - self._running)
        try:
            tasks = self._claim(want, stop, until_empty)
        finally:
            with self._cond:
                self._claiming = False
                self._cond.notify_all()
        with self._cond:
            if not tasks:  # nothing to claim (until_empty), or stopped while waiting
                self._exhausted = until_empty
                return None
            now = time.monotonic()
            first, *rest = tasks
            self._waiting.extend(_Waiting(task, now) for task in rest)
            self._running += 1
            self._cond.notify_all()
            return first

    def _claim(self, limit: int, stop: threading.Event, until_empty: bool) -> list[Task]:
        if until_empty:
            return self.client.try_claim_many(*self.queues, limit=limit, duration=self.lease)
        try:
            return self.client.claim_many(*self.queues, limit=limit, duration=self.lease, stop=stop)
        except ClaimTimeout:
            return []  # stopped while waiting

    def finished(self) -> None:
        """Say that a task ``take`` returned is done with (finished, failed or lost)."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def waiting_ids(self) -> list[uuid.UUID]:
        """Return the IDs of the tasks claimed and not yet taken (for a worker's beat)."""
        with self._cond:
            return [w.task.id for w in self._waiting]

    def close(self) -> None:
        """Stop renewing, and give back the tasks that were claimed but never started,
        so that other workers need not wait for their leases to lapse."""
        with self._cond:
            self._closed = True
            waiting = [w.task for w in self._waiting]
            self._waiting.clear()
            self._cond.notify_all()
        self._renewer.join(max(self.lease, 10.0))
        if not waiting:
            return
        # A change that gives nothing makes the task available now: released.
        releases = [new_modification(self.client.id, task.as_change()) for task in waiting]
        try:
            outcomes = self.client.backend.modify_each(releases)
        except BackendUnavailable as error:
            logger.warning("%d prefetched task(s) not given back (%s)", len(waiting), error)
            return
        kept = sum(isinstance(o, Exception) for o in outcomes)
        logger.info("gave back %d prefetched task(s)", len(waiting) - kept)

    def _renew_loop(self) -> None:
        try:
            self._renew_while_open()
        finally:
            self.client.backend.release_thread()

    def _renew_while_open(self) -> None:
        with self._cond:
            while not self._closed:
                due_at = min((w.renewed for w in self._waiting), default=None)
                if due_at is None:
                    self._cond.wait()
                    continue
                left = due_at + self.lease / 2 - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                # Under the lock: a task is never handed out while its renewal, which
                # changes its version, is under way.
                self._renew_due()

    def _renew_due(self) -> None:
        now = time.monotonic()
        due = [w for w in self._waiting if now - w.renewed >= self.lease / 2]
        try:
            renewed = self.client.renew_all_for([w.task for w in due], self.lease)
        except DependencyError:
            renewed = []
            for waiting in due:  # one was lost: renew the others, drop that one
                try:
                    renewed += self.client.renew_all_for([waiting.task], self.lease)
                except DependencyError as error:
                    logger.info("prefetched task %s lost its lease: %s", waiting.task.id, error)
                    self._waiting.remove(waiting)
        except Exception as error:  # the store is away: try again soon, while leases last
            logger.warning("prefetched tasks not renewed yet (%s)", error)
            for waiting in due:
                waiting.renewed += min(1.0, self.lease / 10)
            return
        fresh = {task.id: task for task in renewed}
        now = time.monotonic()
        for waiting in self._waiting:
            if waiting.task.id in fresh:
                waiting.task, waiting.renewed = fresh[waiting.task.id], now


class Acks:
    """Applies finished tasks' final modifications together.

    ``submit`` hands one over with a callback; a thread applies what has come within
    ``linger`` seconds (or ``batch`` of them at once) with ``Backend.modify_each``,
    so a deletion that fails its check is reported alone, and calls each callback
    with its outcome. ``close`` applies what is left. A modification never applied
    (the process died) loses nothing: its task comes back when its lease lapses.
    """

    def __init__(self, backend: Backend, *, linger: float = 0.005, batch: int = 200) -> None:
        self.backend = backend
        self.linger = linger
        self.batch = batch
        self._pending: list[tuple[Modification, Acknowledged]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="entroq-acks", daemon=True)
        self._thread.start()

    def submit(self, mod: Modification, done: Acknowledged) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("acks are closed")
            self._pending.append((mod, done))
            self._cond.notify_all()

    def close(self) -> None:
        """Apply what is pending, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._apply_until_closed()
        finally:
            self.backend.release_thread()

    def _apply_until_closed(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                # Let others finish meanwhile, unless a batch is full or we are closing.
                deadline = time.monotonic() + self.linger
                while len(self._pending) < self.batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                group, self._pending = self._pending[: self.batch], self._pending[self.batch :]
            self._apply(group)

    def _apply(self, group: list[tuple[Modification, Acknowledged]]) -> None:
        try:
            outcomes: Sequence[ModifyOutcome | BackendUnavailable] = self.backend.modify_each(
                [mod for mod, _ in group]
            )
        except BackendUnavailable as error:
            outcomes = [error] * len(group)
        except Exception as error:  # a bug or a database error: each hears of it
            logger.exception("acknowledgements failed")
            outcomes = [BackendUnavailable(str(error))] * len(group)
        for (_, done), outcome in zip(group, outcomes, strict=True):
            try:
                done(outcome)
            except Exception:
                logger.exception("an acknowledgement's callback failed")
