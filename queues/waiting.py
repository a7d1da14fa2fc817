"""Waiting claims of the HTTP API: how many a process holds, and clients that hang up.

A long-poll claim holds a server thread while it waits, so a process lets at most
half its threads wait (and a token half of those): see :func:`bounds`. A claim whose
client closes its connection stops waiting, and a task claimed for it meanwhile is
released rather than held for its lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError

from queues import metrics
from queues.conf import app_settings
from queues.entroq import (
    Backend,
    BackendUnavailable,
    ClaimQuery,
    ClaimTimeout,
    DependencyError,
    Task,
    TaskChange,
)
from queues.entroq.modify import Modification

logger = logging.getLogger("queues.api")

# Processes that do not say how many threads they have are taken to have gunicorn's
# default in entroq_site/gunicorn.conf.py.
DEFAULT_SERVER_THREADS = 32
# How often the connections of waiting claims are looked at.
HANGUP_CHECK_SECONDS = 0.25

_lock = threading.Lock()
_by_token: Counter[uuid.UUID] = Counter()


def bounds() -> tuple[int, int]:
    """Return how many claims may wait at once in this process, and how many of them
    for any one token.

    ``API_MAX_WAITING_CLAIMS`` and ``API_MAX_WAITING_CLAIMS_PER_TOKEN`` when set;
    otherwise half the process's threads (``ENTROQ_SERVER_THREADS``, which
    entroq_site/gunicorn.conf.py sets from gunicorn's ``threads``), and half of that
    for a token, so that the rest of the threads answer everything else.
    """
    raw = os.environ.get("ENTROQ_SERVER_THREADS", "")
    threads = int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_SERVER_THREADS
    per_process = app_settings().API_MAX_WAITING_CLAIMS
    per_process = threads // 2 if per_process is None else int(per_process)
    per_token = app_settings().API_MAX_WAITING_CLAIMS_PER_TOKEN
    per_token = (per_process + 1) // 2 if per_token is None else int(per_token)
    return per_process, min(per_token, per_process)


@contextlib.contextmanager
def slot(claimant: uuid.UUID) -> Iterator[bool]:
    """Take one of this process's places for a waiting claim, if the bounds leave one;
    yield whether it did."""
    per_process, per_token = bounds()
    metrics.WAITING_BOUND.set(per_process)
    with _lock:
        admitted = _by_token.total() < per_process and (_by_token[claimant] < per_token)
        if admitted:
            _by_token[claimant] += 1
            metrics.WAITING.inc()
    try:
        yield admitted
    finally:
        if admitted:
            with _lock:
                _by_token[claimant] -= 1
                if not _by_token[claimant]:
                    del _by_token[claimant]
                metrics.WAITING.dec()


def wait_for_tasks(
    backend: Backend, query: ClaimQuery, wait: float, connection: Any
) -> tuple[list[Task], bool]:
    """Claim up to ``query.limit`` tasks, waiting up to ``wait`` seconds for the first;
    return them (perhaps none) and whether the client at the other end of
    ``connection`` (gunicorn's socket, if any) has gone."""
    with _HANGUPS.watch(connection) as gone:
        if gone.is_set():
            return [], True
        try:
            tasks = backend.claim_many(query, timeout=wait, stop=gone)
        except ClaimTimeout:
            tasks = []
    # The connection may have closed after the last look.
    return tasks, gone.is_set() or has_left(connection)


def has_left(connection: Any) -> bool:
    """Return whether the client of ``connection`` has closed it (or reset it).

    A peek that finds the end of the stream says so; bytes waiting (a pipelined
    request) or nothing yet mean the client is there. A connection that cannot be
    peeked (TLS, or none at all) counts as there.
    """
    if not isinstance(connection, socket.socket) or isinstance(connection, ssl.SSLSocket):
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except ConnectionError:
        return True
    except (OSError, ValueError):
        return False  # closed on our side: the request is over anyway


class _Hangups:
    """Look at the connections of this process's waiting claims four times a second, in
    one thread, and set the event of each whose client has gone.

    One thread for them all, rather than a look from each claim's thread: a waiting
    claim sleeps in the backend, looking only at its stop event, which this sets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._watched: dict[int, tuple[socket.socket, threading.Event]] = {}
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, connection: Any) -> Iterator[threading.Event]:
        """Yield an event set once the client of ``connection`` has gone."""
        gone = threading.Event()
        if not isinstance(connection, socket.socket):
            yield gone
            return
        if has_left(connection):
            gone.set()
        with self._lock:
            self._watched[id(gone)] = (connection, gone)
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
                self._thread = threading.Thread(
                    target=self._run, name="entroq-api-hangups", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        try:
            yield gone
        finally:
            with self._lock:
                del self._watched[id(gone)]

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._watched:
                    self._changed.wait()
                watched = list(self._watched.values())
            for connection, gone in watched:
                if not gone.is_set() and has_left(connection):
                    gone.set()
            time.sleep(HANGUP_CHECK_SECONDS)


_HANGUPS = _Hangups()


def release(backend: Backend, task: Task) -> None:
    """Give back a task claimed for a client that has gone, rather than let it wait out
    its lease."""
    try:
        backend.modify(
            Modification(
                claimant=task.claimant,
                # Its value is at hand: the store need not read it back.
                changes=[TaskChange(id=task.id, version=task.version, known_value=task.value)],
            )
        )
    except (DependencyError, DatabaseError, BackendUnavailable) as failed:
        logger.warning("api: task %s, claimed for a client that left, is held: %s", task.id, failed)
    else:
        logger.info("api: task %s, claimed for a client that left, is released", task.id)
