"""Live workers: each ``eqworker`` process announces itself, beats every few seconds,
and stops gracefully when an operator asks it to.

A worker's beat is one ``UPDATE`` of its own row by primary key, sent by a thread of
its own (``Heart``) from counters the worker threads keep anyway: the task loop never
waits for it and does no database work for it. The update is filtered on "no stop
requested", so the usual beat is that single statement; only when it changes no row
does a second look tell a stop request from a row pruned meanwhile (then the worker
announces itself again). Workers over HTTP beat through the API (``api_workers``),
which calls the same functions.

The times are the database's (``Now()``), so workers on hosts with skewed clocks are
judged by one clock: a worker is stale when it missed ``STALE_BEATS`` beats, and its
row is pruned ``PRUNE_AFTER`` its last beat.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connections, router
from django.db.models.functions import Now

from queues.entroq.pauses import Pause
from queues.entroq.tasks import MAX_QUEUE_LENGTH, check_queue
from queues.models import ApiToken, AuditEntry, WorkerProcess

logger = logging.getLogger("queues.liveness")

BEAT_SECONDS = 5.0
# Beats are at least this far apart, and at most: a beat is news, not a heartbeat storm.
MIN_BEAT_SECONDS = 1.0
MAX_BEAT_SECONDS = 300.0
# A worker that missed this many beats (and at least MIN_STALE) is stale.
STALE_BEATS = 3
MIN_STALE = timedelta(seconds=15)
# A row is deleted this long after its last beat (stale or exited alike).
PRUNE_AFTER = timedelta(hours=1)
# Sizes a beat may carry: held task IDs beyond the first are only counted.
MAX_HELD_IDS = 100
MAX_QUEUES = 100
MAX_LISTED = 1000
# Workers one API token may have announced and not exited at once.
MAX_WORKERS_PER_TOKEN = 100
STOP_WORKER = "stop worker"

ALIVE, STOPPING, STALE, EXITED = "alive", "stopping", "stale", "exited"


class Forbidden(Exception):
    """The caller may not beat for, or stop, this worker."""


@functools.cache
def version() -> str:
    """Return this app's version, as a worker reports it."""
    try:
        return importlib.metadata.version("entroq-django")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass(frozen=True)
class Announcement:
    """Who a worker process is and what it consumes; fixed for its life."""

    id: uuid.UUID
    kind: str
    host: str
    pid: int
    version: str
    queues: tuple[str, ...]
    concurrency: int = 1
    prefetch: int = 0
    handler: str = ""
    beat_seconds: float = BEAT_SECONDS

    @classmethod
    def of_this_process(cls, kind: str, queues: Sequence[str], **more: Any) -> Announcement:
        """Return an announcement for the running process, with a new ID."""
        return cls(
            id=uuid.uuid4(),
            kind=kind,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=version(),
            queues=tuple(queues),
            **more,
        )

    def checked(self) -> Announcement:
        """Return this announcement if every field is within bounds; else ``ValueError``."""
        if self.kind not in WorkerProcess.Kind.values:
            raise ValueError(f"kind: one of {', '.join(WorkerProcess.Kind.values)}")
        _text(self.host, "host", 255, required=True)
        _text(self.version, "version", 50, required=True)
        _text(self.handler, "handler", 255)
        if not 1 <= len(self.queues) <= MAX_QUEUES:
            raise ValueError(f"queues: expected 1 to {MAX_QUEUES} queue names")
        for index, queue in enumerate(self.queues):
            check_queue(queue, f"queues[{index}]")
        _int(self.pid, "pid", 0, 2**31 - 1)
        _int(self.concurrency, "concurrency", 1, 10_000)
        _int(self.prefetch, "prefetch", 0, 10_000)
        seconds = self.beat_seconds
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise ValueError("beat_seconds: expected a number")
        if not MIN_BEAT_SECONDS <= seconds <= MAX_BEAT_SECONDS:
            raise ValueError(f"beat_seconds: from {MIN_BEAT_SECONDS:g} to {MAX_BEAT_SECONDS:g}")
        return self

    def described(self) -> dict[str, Any]:
        """Return what the worker says of itself, by field (its row's, and a beat's)."""
        return {
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "handler": self.handler,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "prefetch": self.prefetch,
            "beat_seconds": self.beat_seconds,
        }


@dataclasses.dataclass(frozen=True)
class Pulse:
    """What a worker reports at each beat: its counts and the tasks in its hands."""

    done: int = 0
    failed: int = 0
    holding: int = 0
    # The first MAX_HELD_IDS of the tasks it holds.
    held: tuple[uuid.UUID, ...] = ()

    @classmethod
    def of(cls, done: int, failed: int, held: Iterable[uuid.UUID]) -> Pulse:
        ids = list(held)
        return cls(done, failed, len(ids), tuple(ids[:MAX_HELD_IDS]))

    def checked(self) -> Pulse:
        _int(self.done, "done", 0, 2**63 - 1)
        _int(self.failed, "failed", 0, 2**63 - 1)
        _int(self.holding, "holding", 0, 2**31 - 1)
        if len(self.held) > MAX_HELD_IDS:
            raise ValueError(f"held: at most {MAX_HELD_IDS} task IDs")
        return self

    def fields(self) -> dict[str, Any]:
        return {
            "last_beat": Now(),
            "done": self.done,
            "failed": self.failed,
            "holding": self.holding,
            "held": [str(id) for id in self.held],
        }


def _text(value: object, name: str, most: int, *, required: bool = False) -> None:
    if not isinstance(value, str) or len(value) > most or "\x00" in value:
        raise ValueError(f"{name}: expected text of at most {most} characters, without NUL")
    if required and not value.strip():
        raise ValueError(f"{name}: must not be empty")


def _int(value: object, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an integer from {low} to {high}")


# What workers write.


def announce(
    worker: Announcement, pulse: Pulse | None = None, *, token: ApiToken | None = None
) -> None:
    """Record ``worker`` as started now (or as back, if its row was pruned meanwhile),
    and prune the rows of workers long gone."""
    worker.checked()
    pulse = pulse or Pulse()
    fields = {
        "kind": worker.kind,
        **worker.described(),
        "token": token,
        **pulse.checked().fields(),
    }
    if token is not None:
        # Any token that may claim can announce workers: bound what one fills in.
        others = WorkerProcess.objects.filter(token=token, exited__isnull=True).exclude(
            id=worker.id
        )
        if others.count() >= MAX_WORKERS_PER_TOKEN:
            raise Forbidden(
                f"this token has {MAX_WORKERS_PER_TOKEN} workers announced already; "
                "stop some, or give each group of workers a token of its own"
            )
    WorkerProcess.objects.update_or_create(
        id=worker.id, defaults=fields, create_defaults={**fields, "started": Now()}
    )
    prune()


def beat(worker: Announcement, pulse: Pulse, *, token: ApiToken | None = None) -> bool:
    """Record a beat of ``worker``; return whether it has been asked to stop.

    One statement as a rule; a worker whose row is gone (pruned while it was away) is
    announced again. ``token``, over HTTP: only the token that announced a worker may
    beat for it (``Forbidden``).
    """
    fields = pulse.checked().fields()
    mine = WorkerProcess.objects.filter(id=worker.id, token=token)
    if mine.filter(stop_requested__isnull=True, exited__isnull=True).update(**fields):
        return False
    row = WorkerProcess.objects.filter(id=worker.id).values("token_id", "stop_requested").first()
    if row is None:
        announce(worker, pulse, token=token)
        return False
    if row["token_id"] != (token.pk if token else None):
        raise Forbidden("this worker was announced by another token, or not over HTTP")
    mine.update(**fields, exited=None)  # exited and back (a reused ID): alive again
    return row["stop_requested"] is not None


def exited(worker: Announcement, pulse: Pulse, *, token: ApiToken | None = None) -> None:
    """Record that ``worker`` stopped on its own (not stale: gone)."""
    fields = pulse.checked().fields()
    WorkerProcess.objects.filter(id=worker.id, token=token).update(**fields, exited=Now())


def prune() -> int:
    """Delete the rows of workers whose last beat is ``PRUNE_AFTER`` old, by the
    database's clock (a worker's own may be off); return how many."""
    deleted, _ = WorkerProcess.objects.filter(last_beat__lt=Now() - PRUNE_AFTER).delete()
    return deleted


# What operators read and do.


@dataclasses.dataclass(frozen=True)
class Status:
    """A worker as an operator sees it: its row, its state, and its last beat's age."""

    row: WorkerProcess
    state: str
    silent: timedelta

    @property
    def live(self) -> bool:
        return self.state in (ALIVE, STOPPING)


def state(row: WorkerProcess, now: datetime) -> str:
    """Return ``row``'s state: alive, stopping (asked to), stale (silent) or exited."""
    if row.exited is not None:
        return EXITED
    if now - row.last_beat > stale_after(row.beat_seconds):
        return STALE
    return STOPPING if row.stop_requested is not None else ALIVE


def status(row: WorkerProcess, now: datetime) -> Status:
    """Return ``row`` with its state and how long it has been silent."""
    return Status(row, state(row, now), max(timedelta(0), now - row.last_beat))


def stale_after(beat_seconds: float) -> timedelta:
    return max(MIN_STALE, timedelta(seconds=STALE_BEATS * beat_seconds))


def workers(now: datetime, *, queue: str = "") -> list[Status]:
    """Return the workers known (those consuming ``queue``, if given), the live first."""
    rows = WorkerProcess.objects.order_by("-last_beat")[:MAX_LISTED]
    found = [status(row, now) for row in rows if not queue or _consumes(row, queue)]
    order = {ALIVE: 0, STOPPING: 1, STALE: 2, EXITED: 3}
    return sorted(found, key=lambda s: (order[s.state], s.row.host, s.row.pid))


def consumers(queue: str, now: datetime) -> int:
    """Return how many live workers consume ``queue``."""
    # Only rows that beat lately can be live: the index on last_beat finds them.
    recent = WorkerProcess.objects.filter(
        last_beat__gte=now - stale_after(MAX_BEAT_SECONDS), exited__isnull=True
    ).only("queues", "last_beat", "beat_seconds", "exited", "stop_requested")
    return sum(1 for row in recent[:MAX_LISTED] if _consumes(row, queue) and _live(row, now))


def _consumes(row: WorkerProcess, queue: str) -> bool:
    """Return whether the worker of ``row`` claims from ``queue``, by name or pattern."""
    return any(Pause.parse(claimed).covers(queue) for claimed in row.queues)


def _live(row: WorkerProcess, now: datetime) -> bool:
    return state(row, now) in (ALIVE, STOPPING)


def find(text: str) -> WorkerProcess | None:
    """Return the worker whose ID (or the start of it, 8 characters or more) is ``text``."""
    text = text.strip().lower()
    try:
        return WorkerProcess.objects.filter(id=uuid.UUID(text)).first()
    except ValueError:
        pass
    if len(text) < 8 or not all(c in "0123456789abcdef-" for c in text):
        return None
    matches = list(WorkerProcess.objects.filter(id__startswith=text)[:2])
    return matches[0] if len(matches) == 1 else None


def request_stop(
    row: WorkerProcess,
    now: datetime,
    *,
    user: AbstractBaseUser | AnonymousUser | None = None,
    by: str = "",
) -> str:
    """Ask ``row``'s worker to stop once the tasks in hand are done, at its next beat;
    record it in the audit log and return what came of it, in words.

    ``user`` is the operator's account; ``by`` names anyone else (a command line user).
    """
    username = user.get_username() if user is not None else by
    what = f"{row.host}:{row.pid} ({row.id}) on {', '.join(row.queues)}"
    current = state(row, now)
    if current == EXITED:
        outcome, said = AuditEntry.Outcome.REFUSED, f"worker {what} has already exited"
    elif row.stop_requested is not None:
        outcome, said = AuditEntry.Outcome.DONE, f"worker {what} was already asked to stop"
    else:
        WorkerProcess.objects.filter(id=row.id, stop_requested__isnull=True).update(
            stop_requested=Now(), stop_requested_by=username[:150]
        )
        outcome = AuditEntry.Outcome.DONE
        said = f"asked worker {what} to stop after the tasks in hand"
        if current == STALE:
            said += "; it has not beaten lately, so it may never hear"
    AuditEntry.objects.create(
        user_id=user.pk if user is not None and user.is_authenticated else None,
        username=username[:150],
        action=STOP_WORKER,
        queue=", ".join(row.queues)[:MAX_QUEUE_LENGTH],
        outcome=outcome,
        detail=said,
    )
    return said


def as_json(status: Status) -> dict[str, Any]:
    """Return ``status`` as the API and ``eq workers --json`` show it."""
    row = status.row
    return {
        "id": str(row.id),
        "state": status.state,
        "kind": row.kind,
        "host": row.host,
        "pid": row.pid,
        "version": row.version,
        "handler": row.handler,
        "queues": row.queues,
        "concurrency": row.concurrency,
        "prefetch": row.prefetch,
        "started": row.started.isoformat(),
        "last_beat": row.last_beat.isoformat(),
        "silent_seconds": round(status.silent.total_seconds(), 1),
        "done": row.done,
        "failed": row.failed,
        "holding": row.holding,
        "held": row.held,
        "stop_requested": row.stop_requested.isoformat() if row.stop_requested else None,
        "stop_requested_by": row.stop_requested_by,
        "exited": row.exited.isoformat() if row.exited else None,
    }


# The beating thread of a worker process.


class Beats(Protocol):
    """Where a ``Heart`` sends its beats: the database, or the HTTP API."""

    def announce(self, worker: Announcement, pulse: Pulse) -> None: ...

    def beat(self, worker: Announcement, pulse: Pulse) -> bool: ...

    def exited(self, worker: Announcement, pulse: Pulse) -> None: ...

    def release(self) -> None: ...


class DatabaseBeats:
    """Beats written with the ORM, on the heart thread's own connection."""

    def announce(self, worker: Announcement, pulse: Pulse) -> None:
        announce(worker, pulse)

    def beat(self, worker: Announcement, pulse: Pulse) -> bool:
        return beat(worker, pulse)

    def exited(self, worker: Announcement, pulse: Pulse) -> None:
        exited(worker, pulse)

    def release(self) -> None:
        # The connection is this thread's: close it, or it lingers (or stays broken).
        connections[router.db_for_write(WorkerProcess)].close()


class Heart:
    """Beats for a worker process from a thread of its own, every ``beat_seconds``.

    ``pulse()`` reads the worker threads' counters (no lock held long, no database);
    a stop request sets ``stop``, as SIGTERM does. A failed beat is logged and tried
    again at the next: beats never stop the work.
    """

    def __init__(
        self,
        worker: Announcement,
        pulse: Callable[[], Pulse],
        stop: threading.Event,
        beats: Beats,
    ) -> None:
        self.worker = worker
        self.pulse = pulse
        self.stop = stop
        self.beats = beats
        self.beats_sent = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eqworker-beat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop beating, saying that the worker exited."""
        self._closing.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        announced = self._send(lambda: self.beats.announce(self.worker, self.pulse()))
        try:
            while not self._closing.wait(self.worker.beat_seconds):
                if not announced:
                    announced = self._send(lambda: self.beats.announce(self.worker, self.pulse()))
                    continue
                self._send(self._beat)
            self._send(lambda: self.beats.exited(self.worker, self.pulse()))
        finally:
            self.beats.release()

    def _beat(self) -> None:
        if self.beats.beat(self.worker, self.pulse()) and not self.stop.is_set():
            logger.info(
                "eqworker: an operator asked this worker to stop; finishing the tasks in hand"
            )
            self.stop.set()

    def _send(self, send: Callable[[], None]) -> bool:
        try:
            send()
        except Exception as error:
            logger.warning("eqworker: beat not recorded (%s); trying again later", error)
            self.beats.release()
            return False
        self.beats_sent += 1
        return True
