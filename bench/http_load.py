"""Load on the HTTP API: clients claiming and deleting through a real server.

Each client is a thread with its own ``HTTPBackend`` (pooled connections, its own
claimant). A client claims with a short long-poll, deletes what it claimed, and
records the time the pair took. When the store fails (a restarted database), a
client backs off and goes on; a delete whose answer was lost is recorded as
uncertain, since it may have happened. ``check`` then proves that nothing was lost
and nothing was finished twice.

Used by ``tests/api/test_load.py`` (short) and ``bench/http_api.py`` (long).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from queues.entroq import (
    BackendUnavailable,
    ClaimTimeout,
    DependencyError,
    EntroQ,
    HTTPBackend,
)

QUEUE = "load"


@dataclass
class Load:
    """What the clients did."""

    seconds: float = 0.0
    #: Tasks whose delete was answered: each must appear once.
    deleted: list[uuid.UUID] = field(default_factory=list)
    #: Tasks whose delete failed without an answer: done or not, nobody knows.
    uncertain: set[uuid.UUID] = field(default_factory=set)
    #: Seconds each claim-and-delete took.
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: When the fault was over (the database back), and the first delete after that.
    restored_at: float | None = None
    recovered_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rate(self) -> float:
        return len(self.deleted) / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def summary(self) -> str:
        line = (
            f"{len(self.deleted):,} tasks in {self.seconds:.1f} s = {self.rate:,.0f}/s; "
            f"claim+delete p50 {1000 * self.percentile(0.5):.1f} ms, "
            f"p99 {1000 * self.percentile(0.99):.1f} ms"
        )
        if self.errors:
            line += "; errors: " + ", ".join(f"{k} {v}" for k, v in self.errors.most_common())
        if self.restored_at is not None and self.recovered_at is not None:
            took = self.recovered_at - self.restored_at
            line += f"; first delete {took:.1f} s after the database came back"
        return line


def run(
    base_url: str,
    secrets: list[str],
    *,
    seconds: float,
    fault: Callable[[], None] | None = None,
    fault_after: float = 0.0,
    lease: float = 5.0,
) -> Load:
    """Run one client per token in ``secrets`` for ``seconds``; call ``fault`` midway."""
    load = Load()
    started = time.monotonic()
    deadline = started + seconds
    clients = [
        threading.Thread(target=_client, args=(base_url, s, deadline, lease, load), daemon=True)
        for s in secrets
    ]
    for client in clients:
        client.start()
    if fault is not None:
        time.sleep(max(0.0, started + fault_after - time.monotonic()))
        fault()
        load.restored_at = time.monotonic()
    for client in clients:
        client.join(seconds + 120)
        if client.is_alive():
            raise RuntimeError("a load client hung")
    load.seconds = time.monotonic() - started
    return load


def _client(base_url: str, secret: str, deadline: float, lease: float, load: Load) -> None:
    eq = _connect(base_url, secret, deadline, load)
    backoff = 0.1
    while eq is not None and time.monotonic() < deadline:
        begun = time.monotonic()
        try:
            task = eq.claim(QUEUE, duration=lease, timeout=1)
        except ClaimTimeout:
            continue
        except (BackendUnavailable, DependencyError, ValueError, PermissionError) as error:
            _failed(load, "claim", error)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        try:
            eq.modify(task.as_deletion())
        except DependencyError:
            # The lease lapsed (a slow moment) and another client has it: not ours.
            with load.lock:
                load.errors["delete lost the lease"] += 1
            continue
        except (BackendUnavailable, ValueError, PermissionError) as error:
            _failed(load, "delete", error)
            with load.lock:
                load.uncertain.add(task.id)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        backoff = 0.1
        now = time.monotonic()
        with load.lock:
            load.deleted.append(task.id)
            load.latencies.append(now - begun)
            restored = load.restored_at
            if restored is not None and load.recovered_at is None and begun > restored:
                load.recovered_at = now


def _connect(base_url: str, secret: str, deadline: float, load: Load) -> EntroQ | None:
    while time.monotonic() < deadline:
        try:
            return EntroQ(HTTPBackend(base_url, token=secret, timeout=10))
        except BackendUnavailable as error:
            _failed(load, "connect", error)
            time.sleep(0.5)
    return None


def _failed(load: Load, step: str, error: Exception) -> None:
    kind = type(error).__name__
    with load.lock:
        load.errors[f"{step} {kind}"] += 1


def check(load: Load, inserted: set[uuid.UUID], remaining: set[uuid.UUID]) -> list[str]:
    """Return what went wrong: tasks lost, finished twice, or deleted yet still there."""
    problems = []
    twice = [i for i, n in Counter(load.deleted).items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} tasks were deleted twice, e.g. {twice[0]}")
    deleted = set(load.deleted)
    if deleted & remaining:
        problems.append(f"{len(deleted & remaining)} deleted tasks are still in the queue")
    lost = inserted - deleted - remaining - load.uncertain
    if lost:
        problems.append(f"{len(lost)} tasks vanished without a delete, e.g. {next(iter(lost))}")
    unknown = (deleted | remaining) - inserted
    if unknown:
        problems.append(f"{len(unknown)} tasks came from nowhere")
    return problems


# A database to load: migrated, with a user, one token a client, and tasks.

SETUP = """
import json
from django.contrib.auth.models import User
from queues import tokens
from queues.entroq import EntroQ, TaskData, inserting
user = User.objects.create_superuser("load", email="")
grants = [tokens.Grant.parse("=read,claim,insert,change,delete")]
secrets = [tokens.create(user, f"client {{i}}", grants)[1] for i in range({clients})]
inserted, _ = EntroQ().modify(inserting(*[TaskData(queue="{queue}") for _ in range({tasks})]))
print(json.dumps({{"secrets": secrets, "ids": [str(t.id) for t in inserted]}}))
"""


def prepare(url: str, clients: int, tasks: int) -> tuple[list[str], set[uuid.UUID]]:
    """Migrate, make a user with one token a client, insert the tasks."""
    from scripts.webserver import manage

    manage(url, "migrate", "--no-input", "-v", "0")
    code = SETUP.format(clients=clients, tasks=tasks, queue=QUEUE)
    out = manage(url, "shell", "--no-imports", "-c", code)
    made = json.loads(out.strip().splitlines()[-1])
    return made["secrets"], {uuid.UUID(i) for i in made["ids"]}


def remaining(url: str) -> set[uuid.UUID]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT id FROM entroq_task WHERE queue = %s", [QUEUE])
        return {row[0] for row in rows}


def insert(url: str, count: int) -> set[uuid.UUID]:
    """Insert ``count`` tasks into the load queue; return their IDs."""
    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(url) as db:
        db.execute(
            "INSERT INTO entroq_task (id, queue, version, at, claimant, claims, value, "
            "created, modified, attempt, err) "
            "SELECT id, %s, 0, now(), NULL, 0, '', now(), now(), 0, '' FROM unnest(%s::uuid[]) id",
            [QUEUE, ids],
        )
    return set(ids)


def clear(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DELETE FROM entroq_task WHERE queue = %s", [QUEUE])
        db.execute("VACUUM ANALYZE entroq_task")
