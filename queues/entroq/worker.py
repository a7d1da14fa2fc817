"""``Worker``: claim a task, run work on it with its lease renewed, apply the result; repeat."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .backend import ModifyOutcome
from .errors import (
    BackendUnavailable,
    ClaimTimeout,
    DependencyError,
    ErrorTaskValue,
    MoveTaskError,
    RetryTaskError,
    default_err_qmap,
)
from .leases import LeaseClient, LeaseKeeper
from .modify import (
    Modification,
    ModifyArg,
    changing,
    inserting_into,
    new_modification,
    with_modification,
)
from .prefetch import Acks, Prefetcher
from .tasks import MAX_ERR_LENGTH, Duration, Task, seconds

logger = logging.getLogger(__name__)

Work = Callable[[Task], Sequence[ModifyArg]]
DependencyHandler = Callable[[DependencyError], None]


class WorkerClient(LeaseClient, Protocol):
    """What a ``Worker`` uses of its client, an ``EntroQ``.

    Declared here, so that this module does not import the client, which imports it.
    """

    def try_claim(self, *queues: str, duration: Duration = ...) -> Task | None: ...

    def claim(
        self, *queues: str, duration: Duration = ..., stop: threading.Event | None = ...
    ) -> Task: ...

    def modify(self, *args: ModifyArg) -> tuple[list[Task], list[Task]]: ...


DONE = "done"
NOT_STORED = "outcome not stored, redelivered when its lease lapses"
# While the store is unavailable a run waits this long, doubling up to the most.
OUTAGE_BACKOFF = 1.0
MAX_OUTAGE_BACKOFF = 30.0


def _err_text(error: BaseException | str) -> str:
    text = str(error) or type(error).__name__
    if len(text) > MAX_ERR_LENGTH:
        text = text[: MAX_ERR_LENGTH - 1] + "…"
    return text


class Worker:
    """Processes tasks from its queues one at a time, in a loop (Go's ``Worker``).

    Make one with ``EntroQ.new_worker``. A worker is for one thread; run several
    workers (each with its own client or claimant ID) for concurrency.
    """

    def __init__(
        self,
        client: WorkerClient,
        queues: Sequence[str],
        *,
        lease: Duration = 30,
        err_qmap: Callable[[str], str] = default_err_qmap,
        on_dependency_error: DependencyHandler | None = None,
        max_attempts: int = 0,
        retry_delay: Duration = 30,
    ) -> None:
        if not queues:
            raise ValueError("a worker needs at least one queue")
        if not isinstance(max_attempts, int) or max_attempts < 0:
            raise ValueError(f"max_attempts must be a non-negative int, got {max_attempts!r}")
        self.client = client
        self.queues = tuple(queues)
        self.lease = seconds(lease, "lease")
        if self.lease <= 0:
            raise ValueError("lease must be positive")
        self.err_qmap = err_qmap
        self.on_dependency_error = on_dependency_error
        self.max_attempts = max_attempts
        self.retry_delay = seconds(retry_delay, "retry_delay")

    def run(
        self,
        work: Work,
        stop: threading.Event | None = None,
        *,
        max_tasks: int = 0,
        until_empty: bool = False,
        prefetcher: Prefetcher | None = None,
        acks: Acks | None = None,
    ) -> int:
        """Claim and process tasks until ``stop`` is set; return how many were processed.

        ``work(task)`` returns the modifications that finish the task; versions of the
        task itself are brought up to date with its renewals before they are applied.
        ``MoveTaskError`` moves the task to its error queue, ``RetryTaskError`` puts it
        back for later (moving it once ``max_attempts`` is reached). A lost lease or a
        ``DependencyError`` (from ``work`` or from its modifications) abandons that task
        and goes on; so does a modification the store refuses as malformed, which moves
        the task to its error queue, and a move that cannot be made, which retries the
        task later. While the store is unavailable the run waits, 1 s at first and doubling
        up to 30 s, and goes on when it is back. Any other exception from ``work`` ends
        the run. The task in hand always finishes before a stop takes effect.
        ``max_tasks`` ends the run after that many tasks; ``until_empty`` when no task is
        left to claim.

        With a ``prefetcher`` (shared by the workers of a process, with this worker's
        claimant ID), tasks come from its batches instead of one claim each; with
        ``acks``, a task's finishing modification is applied together with others'
        (its outcome is logged when applied).
        """
        keeper = LeaseKeeper(self.client, self.lease)  # refuses to run inside a transaction
        stop = stop or threading.Event()
        done = 0
        backoff = OUTAGE_BACKOFF
        try:
            while not stop.is_set() and not (max_tasks and done >= max_tasks):
                try:
                    if prefetcher is not None:
                        task = prefetcher.take(stop, until_empty)
                    else:
                        task = self._claim(stop, until_empty)
                    if task is None:
                        break
                    backoff = OUTAGE_BACKOFF
                    done += 1
                    try:
                        self._process(task, work, keeper, acks)
                    finally:
                        if prefetcher is not None:
                            prefetcher.finished()
                except BackendUnavailable as error:
                    # Claims held meanwhile lapse and their tasks are redelivered.
                    logger.warning("store unavailable (%s); trying again in %g s", error, backoff)
                    self.client.backend.release_thread()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_OUTAGE_BACKOFF)
        finally:
            keeper.close()
        return done

    def _claim(self, stop: threading.Event, until_empty: bool) -> Task | None:
        """Return the next task, or None when stopped (or, ``until_empty``, when none is left)."""
        if until_empty:
            return self.client.try_claim(*self.queues, duration=self.lease)
        try:
            return self.client.claim(*self.queues, duration=self.lease, stop=stop)
        except ClaimTimeout:
            return None  # stopped while waiting

    def _process(
        self, task: Task, work: Work, keeper: LeaseKeeper, acks: Acks | None = None
    ) -> None:
        """Run ``work`` on a claimed ``task`` and apply the outcome."""
        started = time.monotonic()
        keeper.hold([task])
        failure: MoveTaskError | RetryTaskError | None = None
        args: Sequence[ModifyArg] = ()
        try:
            args = work(task)
        except (MoveTaskError, RetryTaskError) as error:
            failure = error
        except DependencyError as error:
            # Go's worker goes on too: the work could not proceed as things stand, and
            # the task comes back when its lease lapses.
            keeper.release(raise_error=False)
            self._log(task, "dependency error in work, abandoned", started, error)
            self._dependency_error(error)
            return
        except BackendUnavailable as error:  # the work's own calls met the outage
            keeper.release(raise_error=False)
            self._log(task, "store unavailable in work, redelivered later", started, error)
            raise
        except BaseException:
            keeper.release(raise_error=False)
            raise
        try:
            [current] = keeper.release()
        except Exception as error:
            # The lease is gone: another claimant changed the task (DependencyError), or
            # renewals failed until it lapsed. Either way the task is no longer ours.
            self._log(task, "lease lost, abandoned", started, error)
            return
        try:
            outcome = self._finish(task, current, args, failure, acks, started)
        except DependencyError as error:
            self._log(task, "dependency error", started, error)
            self._dependency_error(error)
            return
        except BackendUnavailable as error:
            self._log(task, NOT_STORED, started, error)
            raise
        if outcome is not None:
            self._log(task, outcome, started, failure)

    def _finish(
        self,
        original: Task,
        current: Task,
        args: Sequence[ModifyArg],
        failure: MoveTaskError | RetryTaskError | None,
        acks: Acks | None = None,
        started: float = 0.0,
    ) -> str | None:
        """Store the outcome of ``work`` for ``current``; return it in words (``None``
        when ``acks`` apply it later, and report it then).

        A modification the store refuses as malformed (``ValueError``: an ID twice, a
        value over the limit) moves the task to its error queue, and a move that cannot
        be made (an error queue name the store refuses) retries it later: neither may
        end the run, or the task would end the next worker's run too. What is not a
        modification at all (``TypeError``) is a bug of the work's, and ends the run.
        """
        if isinstance(failure, RetryTaskError) and (
            not self.max_attempts or current.attempt + 1 < self.max_attempts
        ):
            return self._retry(current, _err_text(failure))
        if failure is not None:
            return self._move_or_retry(current, _err_text(failure))
        # Not what work returned being no modification (a TypeError): a bug to see.
        rewritten = self._rewrite(args, original, current)
        if acks is not None:
            rewritten.claimant = self.client.id
            acks.submit(rewritten, lambda outcome: self._acknowledged(current, outcome, started))
            return None
        try:
            self.client.modify(with_modification(rewritten))
            return DONE
        except ValueError as error:
            reason = _err_text(f"the work's modification was refused: {error}")
            logger.warning("task %s from %s: %s", current.id, current.queue, reason)
            return f"{self._move_or_retry(current, reason)} ({reason})"

    def _acknowledged(
        self, current: Task, outcome: ModifyOutcome | BackendUnavailable, started: float
    ) -> None:
        """Report what became of a finishing modification that ``Acks`` applied."""
        if isinstance(outcome, DependencyError):
            self._log(current, "dependency error", started, outcome)
            self._dependency_error(outcome)
        elif isinstance(outcome, BackendUnavailable):
            self._log(current, NOT_STORED, started, outcome)
        elif isinstance(outcome, ValueError):
            reason = _err_text(f"the work's modification was refused: {outcome}")
            logger.warning("task %s from %s: %s", current.id, current.queue, reason)
            try:
                moved = self._move_or_retry(current, reason)
            except (DependencyError, BackendUnavailable) as error:
                self._log(current, "refused, and not moved", started, error)
                return
            self._log(current, f"{moved} ({reason})", started, None)
        else:
            self._log(current, DONE, started, None)

    def _move_or_retry(self, current: Task, message: str) -> str:
        """Move ``current`` to its error queue; if that cannot be, retry it later."""
        try:
            return self._move(current, message)
        except (TypeError, ValueError) as error:
            retried = self._retry(current, f"{message} (not moved: {error})")
            return f"not moved to its error queue ({error}), {retried}"

    def _retry(self, current: Task, reason: str) -> str:
        """Put ``current`` back for ``retry_delay``, counting the attempt."""
        self.client.modify(
            changing(
                current,
                attempt=current.attempt + 1,
                err=_err_text(reason),
                arrival_in=self.retry_delay,
            )
        )
        return f"retry {current.attempt + 1} in {self.retry_delay:g} s"

    def _move(self, current: Task, message: str) -> str:
        """Move ``current`` to its error queue, wrapped in an ``ErrorTaskValue``."""
        queue = self.err_qmap(current.queue)
        value = ErrorTaskValue(current, message).to_json()
        if len(value) > self.client.backend.max_value_bytes:
            # Wrapped (base64) the value may no longer fit: keep the rest.
            note = "; the value was too large to keep"
            value = ErrorTaskValue(current.copy_omit_value(), message + note).to_json()
        self.client.modify(current.as_deletion(), inserting_into(queue, value=value, err=message))
        return f"moved to {queue}"

    def _dependency_error(self, error: DependencyError) -> None:
        if self.on_dependency_error is not None:
            self.on_dependency_error(error)

    @staticmethod
    def _rewrite(args: Sequence[ModifyArg], original: Task, current: Task) -> Modification:
        """Return the modification of ``args`` with ``original``'s versions made current."""
        mod = new_modification(None, *args)
        if current.version != original.version:
            old = original.id_version()
            fresh = current.version
            mod.deletes = [
                dataclasses.replace(d, version=fresh) if d == old else d for d in mod.deletes
            ]
            mod.depends = [
                dataclasses.replace(d, version=fresh) if d == old else d for d in mod.depends
            ]
            mod.changes = [
                dataclasses.replace(c, version=fresh) if c.id_version() == old else c
                for c in mod.changes
            ]
        return mod

    @staticmethod
    def _log(task: Task, outcome: str, started: float, error: BaseException | None) -> None:
        # A task done is news only when debugging: at thousands a second, a log line
        # for each would cost a worker a quarter of its time. Anything else is news.
        level = logging.DEBUG if outcome == DONE else logging.INFO
        if not logger.isEnabledFor(level):
            return
        logger.log(
            level,
            "task %s from %s: %s in %.3f s%s",
            task.id,
            task.queue,
            outcome,
            time.monotonic() - started,
            f" ({error})" if error is not None else "",
        )
