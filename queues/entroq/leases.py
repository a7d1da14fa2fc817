"""``LeaseKeeper``: renews the leases of held tasks every ``lease / 2`` on one thread."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Protocol

from .backend import Backend
from .errors import DependencyError
from .tasks import Duration, Task


class LeaseClient(Protocol):
    """What a ``LeaseKeeper`` uses of its client, an ``EntroQ``.

    Declared here, so that this module does not import the client, which imports it.
    """

    @property
    def backend(self) -> Backend: ...

    @property
    def id(self) -> uuid.UUID: ...

    def renew_all_for(self, tasks: Sequence[Task], duration: Duration) -> list[Task]: ...

    def tasks(self, *, ids: Iterable[uuid.UUID] = ..., omit_values: bool = ...) -> list[Task]: ...


class LeaseKeeper:
    """Renews the leases of the tasks it holds, every ``lease / 2``, on one thread.

    A worker keeps one for its whole run rather than a thread a task: most tasks
    finish before their first renewal is due, and then the keeper costs a wake-up.
    """

    def __init__(self, client: LeaseClient, lease: float) -> None:
        if client.backend.in_transaction():
            # Renewals run on another connection: they would wait for this
            # transaction's locks, or not see its uncommitted claims at all.
            raise ValueError("lease renewals cannot run inside a database transaction")
        self.client = client
        self.lease = lease
        self._cond = threading.Condition()
        self._tasks: list[Task] | None = None
        self._error: BaseException | None = None
        self._renewed_at = 0.0
        self._renewing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="entroq-lease", daemon=True)
        self._thread.start()

    def hold(self, tasks: list[Task]) -> None:
        """Keep renewing ``tasks`` until ``release``."""
        with self._cond:
            self._tasks, self._error, self._renewed_at = list(tasks), None, time.monotonic()
            # The thread, idle or not, looks again within lease / 2 of when it last
            # did, so before these tasks are due: waking it for each task would cost
            # more than most tasks.

    def release(self, *, raise_error: bool = True) -> list[Task]:
        """Stop renewing; return the tasks at their latest versions.

        Raises the error of a failed renewal (``DependencyError``: a lease was lost).
        """
        with self._cond:
            while self._renewing:
                self._cond.wait()
            tasks, error = self._tasks, self._error
            self._tasks = self._error = None
        if error is not None and raise_error:
            raise error
        return tasks or []

    def close(self) -> None:
        """Stop the thread (after the renewal under way, if any)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(max(self.lease, 10.0))

    def _next(self) -> tuple[list[Task], float] | None:
        """Wait until the held tasks are due for renewal; return them and when their
        leases run out (``None`` once closed)."""
        with self._cond:
            while not self._closed:
                if self._tasks is None or self._error is not None:
                    self._cond.wait(self.lease / 2)
                    continue
                left = self._renewed_at + self.lease / 2 - time.monotonic()
                if left <= 0:
                    self._renewing = True
                    return self._tasks, self._renewed_at + self.lease
                self._cond.wait(left)
            return None

    def _renew(self, tasks: list[Task], expires: float) -> tuple[list[Task], BaseException | None]:
        """Renew ``tasks``; retry other failures than a lost lease until it would lapse.

        A renewal that failed without an answer (a lost response, a dropped connection)
        may have been applied: before trying again, the keeper reads the tasks and goes
        on from the versions this claimant holds, rather than report its own renewal as
        a lost lease.
        """
        while True:
            try:
                return self.client.renew_all_for(tasks, self.lease), None
            except DependencyError as exc:  # the lease is lost: handed to the holder
                return tasks, exc
            except Exception as exc:  # the database may come back before the lease ends
                pause = min(1.0, self.lease / 10)
                if time.monotonic() + pause >= expires - self.lease / 10:
                    return tasks, exc
                time.sleep(pause)
                with contextlib.suppress(Exception):  # still away: try the renewal again
                    tasks = self._as_held(tasks)

    def _as_held(self, tasks: list[Task]) -> list[Task]:
        """Return ``tasks`` at the versions the store has where the renewal sent went
        through: held by this claimant one version on, and claimed no more often.

        A claim since (by another worker of the same claimant ID: the threads of one
        process, the holders of one API token) counts one more claim: that task is left
        as it was, and the renewal reports it lost.
        """
        stored = {t.id: t for t in self.client.tasks(ids=[t.id for t in tasks], omit_values=True)}
        held = []
        for task in tasks:
            now = stored.get(task.id)
            renewed = (
                now is not None
                and now.claimant == self.client.id
                and (now.version, now.claims) == (task.version + 1, task.claims)
            )
            # Renewals never change the value, which the listing left out.
            held.append(dataclasses.replace(now, value=task.value) if renewed and now else task)
        return held

    def _run(self) -> None:
        try:
            while (due := self._next()) is not None:
                tasks, expires = due
                began = time.monotonic()  # the new lease runs from here
                renewed, error = self._renew(tasks, expires)
                with self._cond:
                    self._renewing = False
                    if self._tasks is tasks:
                        self._tasks, self._error, self._renewed_at = renewed, error, began
                    self._cond.notify_all()
        finally:
            self.client.backend.release_thread()
