"""``HTTPBackend``: the task store of an EntroQ server, reached over its HTTP API.

A worker needs only the server's URL and an API token::

    eq = EntroQ(HTTPBackend("https://queues.example.com", token="eq_..."))

The token fixes the claimant ID (the server acts as the token's claimant whatever
the client says), so ``EntroQ`` takes its ID from the server. Connections are pooled
and kept alive; reads are retried with backoff on connection errors and 502, 503
and 504; claims and modifications are retried only when the request never reached
the server. A blocking claim long-polls: the server holds each request until a task
comes or its wait ends, and is woken by the same notifications as in-process claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3

from . import wire
from .backend import Backend, ClaimQuery, ModifyOutcome, QueuesQuery, TasksQuery
from .errors import BackendUnavailable, ClaimTimeout
from .modify import Modification, TaskChange
from .pauses import Pause, parse_all
from .tasks import QueueStat, Task

API_PATH = "/api/v1"
RETRY_STATUSES = frozenset({502, 503, 504})
# How often a stoppable claim looks at its stop event while its poll waits.
STOP_CHECK = 0.25
# Tasks one claim request takes, and modifications one request applies (the server's
# bounds).
CLAIMS_PER_REQUEST = 100
MODIFICATIONS_PER_REQUEST = 1000
# IDs a listing sends in one URL (gunicorn refuses request lines over 8 KiB).
IDS_PER_REQUEST = 100
# Tasks a listing asks for in one request: with values, and without. The server also
# bounds the value bytes of an answer, and says in "next" where to go on.
PAGE = 100
PAGE_WITHOUT_VALUES = 1000
# A claim the server refused (429: too many claims waiting) is tried again after its
# Retry-After, stretched by up to this share so that refused clients spread out, and
# never sooner than BUSY_PAUSE_MIN seconds.
BUSY_JITTER = 0.5
BUSY_PAUSE_MIN = 0.5
BUSY_PAUSE_DEFAULT = 1.0


class ServerBusy(BackendUnavailable):
    """The server answered 429: ask again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HTTPBackend(Backend):
    """The store behind an EntroQ HTTP API, as the holder of ``token``.

    ``base_url`` is the API's root (``https://example.com/ops/api``), or a server's
    address alone (``https://example.com``) for the API at its ``/api/v1``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout: float = 10.0,
        retries: int = 3,
        pool_size: int = 16,
    ) -> None:
        # A bare server address means this project's site, which serves the API at
        # /api/v1; any path is where a project mounted the API (/ops/api).
        base = base_url.rstrip("/")
        self.base_url = base if urlsplit(base).path else base + API_PATH
        self.timeout = timeout
        self.retries = retries
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "entroq-python",
        }
        self._pool = urllib3.PoolManager(maxsize=pool_size, block=False)
        self._whoami: dict[str, Any] | None = None
        self._max_value_bytes: int | None = None
        self._whoami_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<HTTPBackend {self.base_url}>"

    # What the server says of this token.

    def whoami(self) -> dict[str, Any]:
        """Return the token's user, name, claimant ID and grants (asked once)."""
        with self._whoami_lock:
            if self._whoami is None:
                self._whoami = self.call("GET", "/whoami")
            return self._whoami

    def bound_claimant(self) -> uuid.UUID:
        return uuid.UUID(self.whoami()["claimant"])

    @property
    def max_value_bytes(self) -> int:
        """The server's limit (asked once), so oversized values fail before they travel."""
        if self._max_value_bytes is None:
            self._max_value_bytes = int(self.whoami()["max_value_bytes"])
        return self._max_value_bytes

    @max_value_bytes.setter
    def max_value_bytes(self, limit: int) -> None:
        self._max_value_bytes = limit

    # Backend.

    def try_claim(self, query: ClaimQuery) -> Task | None:
        tasks = self._claim(dataclasses.replace(query, limit=1), wait=0.0)
        return tasks[0] if tasks else None

    def try_claim_many(self, query: ClaimQuery) -> list[Task]:
        return self._claim(query, wait=0.0)

    def claim_many(
        self,
        query: ClaimQuery,
        timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> list[Task]:
        """Long-poll for tasks: each request waits on the server for up to its limit for
        the first, and takes up to ``query.limit`` (at most 100 a request).

        With ``stop``, each poll runs in a helper thread so that a stop ends the claim
        at once; tasks that the abandoned poll still claims are released. When the
        server holds as many waiting claims as it may (429), the claim pauses for the
        server's ``Retry-After`` (a stop ends the pause) before it asks again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        longest = float(self.whoami().get("max_wait", 30))
        while True:
            wait = longest
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            try:
                tasks = (
                    self._claim(query, wait) if stop is None else self._stoppable(query, wait, stop)
                )
            except ServerBusy as busy:
                tasks = []
                pause = busy.retry_after * (1 + BUSY_JITTER * random.random())
                if deadline is not None:
                    pause = min(pause, max(0.0, deadline - time.monotonic()))
                if stop is None:
                    time.sleep(pause)
                elif stop.wait(pause):
                    raise ClaimTimeout("claim stopped") from None
            if tasks:
                return tasks
            if deadline is not None and time.monotonic() >= deadline:
                raise ClaimTimeout(f"no task in {', '.join(query.queues)} after {timeout} s")

    def _stoppable(self, query: ClaimQuery, wait: float, stop: threading.Event) -> list[Task]:
        if stop.is_set():
            raise ClaimTimeout("claim stopped")
        answer: list[list[Task] | BaseException] = []
        done = threading.Event()
        abandoned = threading.Event()

        def poll() -> None:
            try:
                answer.append(self._claim(query, wait))
            except BaseException as error:  # handed to the waiting thread
                answer.append(error)
            done.set()
            if abandoned.is_set() and isinstance(answer[0], list):
                self._release(answer[0])

        threading.Thread(target=poll, name="entroq-claim", daemon=True).start()
        while not done.wait(STOP_CHECK):
            if stop.is_set():
                abandoned.set()
                if done.is_set():  # it came back meanwhile
                    break
                raise ClaimTimeout("claim stopped")
        result = answer[0]
        if isinstance(result, BaseException):
            raise result
        if abandoned.is_set() and result:
            self._release(result)
            raise ClaimTimeout("claim stopped")
        return result

    def _release(self, tasks: list[Task]) -> None:
        # Best effort: otherwise the tasks wait for their leases to lapse.
        with contextlib.suppress(Exception):
            self.modify_each(
                [Modification(claimant=t.claimant, changes=[_released(t)]) for t in tasks]
            )

    def _claim(self, query: ClaimQuery, wait: float) -> list[Task]:
        self._check_claimant(query.claimant)
        body: dict[str, Any] = {"queues": list(query.queues), "duration": query.duration}
        body["wait"] = wait
        if query.limit > 1:
            body["limit"] = min(query.limit, CLAIMS_PER_REQUEST)
        answer = self.call("POST", "/claim", body=body, read_timeout=wait + self.timeout)
        if "tasks" in answer:
            return [wire.decode_task(t, "tasks") for t in answer["tasks"]]
        task = answer.get("task")
        return [] if task is None else [wire.decode_task(task)]

    def modify(self, mod: Modification) -> tuple[list[Task], list[Task]]:
        self._check_claimant(mod.claimant)
        return _modified(mod, self.call("POST", "/modify", body=wire.encode_modification(mod)))

    def modify_each(self, mods: Sequence[Modification]) -> list[ModifyOutcome]:
        """Apply each modification on its own, up to 1,000 a request (see
        ``Backend.modify_each``): finished tasks' deletions go together on the server."""
        outcomes: list[ModifyOutcome] = []
        for start in range(0, len(mods), MODIFICATIONS_PER_REQUEST):
            batch = mods[start : start + MODIFICATIONS_PER_REQUEST]
            for mod in batch:
                self._check_claimant(mod.claimant)
            body = {"modifications": [wire.encode_modification(m) for m in batch]}
            answer = self.call("POST", "/modify/each", body=body)
            for mod, outcome in zip(batch, answer["outcomes"], strict=True):
                outcomes.append(_outcome(mod, outcome))
        return outcomes

    def tasks(self, query: TasksQuery) -> list[Task]:
        """List tasks in pages the server can answer: IDs 100 a request, and a queue's
        tasks by keyset, 100 (or 1,000 without values) a request; each page as far as
        the server's byte bound for values takes it, then on from its ``next``."""
        found: list[Task] = []
        if query.ids:
            for start in range(0, len(query.ids), IDS_PER_REQUEST):
                chunk = query.ids[start : start + IDS_PER_REQUEST]
                while chunk:
                    batch, following = self._tasks(dataclasses.replace(query, ids=chunk, limit=0))
                    found += batch
                    if 0 < query.limit <= len(found):
                        return found[: query.limit]
                    rest = tuple(
                        wire.decode_id(raw, f"next.id[{i}]")
                        for i, raw in enumerate((following or {}).get("id") or [])
                    )
                    # Each page answers for one ID at least; anything else would not end.
                    chunk = rest if len(rest) < len(chunk) else ()
            return found
        page = PAGE_WITHOUT_VALUES if query.omit_values else PAGE
        while True:
            want = page if query.limit <= 0 else min(page, query.limit - len(found))
            batch, following = self._tasks(dataclasses.replace(query, limit=want))
            found += batch
            if query.limit > 0 and len(found) >= query.limit:
                return found
            if following is None:  # no more, or a server from before byte bounds
                if len(batch) < want:
                    return found
                last = (batch[-1].at, batch[-1].id)
                following = {"before" if query.newest_first else "after": wire.encode_bound(*last)}
            if not {"after", "before"} & set(following):
                # Asked again as it was, it would answer the same page, forever.
                raise BackendUnavailable(f"GET {self.base_url}/tasks: next names no bound")
            if "after" in following:
                query = dataclasses.replace(
                    query, after=wire.decode_bound(str(following["after"]), "next.after")
                )
            if "before" in following:
                query = dataclasses.replace(
                    query, before=wire.decode_bound(str(following["before"]), "next.before")
                )

    def _tasks(self, query: TasksQuery) -> tuple[list[Task], dict[str, Any] | None]:
        """Return one page of tasks, and where the server says the listing goes on."""
        params: dict[str, Any] = {"limit": query.limit, "min_attempt": query.min_attempt}
        if query.queue:
            params["queue"] = query.queue
        if query.ids:
            params["id"] = [str(i) for i in query.ids]
        if query.claimant is not None:
            params["claimant"] = str(query.claimant)
        if query.omit_values:
            params["omit_values"] = "true"
        if query.state:
            params["state"] = query.state
        if query.newest_first:
            params["newest_first"] = "true"
        if query.preview:
            params["preview"] = query.preview
        for name, bound in (("after", query.after), ("before", query.before)):
            if bound is not None:
                params[name] = wire.encode_bound(*bound)
        answer = self.call("GET", "/tasks", params=params)
        following = answer.get("next")
        if following is not None and not isinstance(following, dict):
            raise BackendUnavailable(f"GET {self.base_url}/tasks: next is not an object")
        return [wire.decode_task(t, "tasks") for t in answer["tasks"]], following

    def queue_stats(self, query: QueuesQuery) -> dict[str, QueueStat]:
        answer = self.call("GET", "/stats", params=_queue_params(query))
        return {name: wire.decode_stat(name, raw) for name, raw in answer["stats"].items()}

    def queues(self, query: QueuesQuery) -> dict[str, int]:
        answer = self.call("GET", "/queues", params=_queue_params(query))
        return {str(name): int(size) for name, size in answer["queues"].items()}

    def time(self) -> datetime:
        return wire.decode_time(self.call("GET", "/time")["time"], "time")

    def pause(self, pauses: Sequence[Pause]) -> list[Pause]:
        answer = self.call("POST", "/pause", body={"queues": [str(p) for p in pauses]})
        return parse_all(answer["changed"])

    def resume(self, pauses: Sequence[Pause]) -> list[Pause]:
        answer = self.call("POST", "/resume", body={"queues": [str(p) for p in pauses]})
        return parse_all(answer["changed"])

    def paused(self) -> list[Pause]:
        return [
            dataclasses.replace(
                Pause.parse(item["queue"]),
                since=None if item["since"] is None else wire.decode_time(item["since"], "since"),
            )
            for item in self.call("GET", "/paused")["paused"]
        ]

    def close(self) -> None:
        self._pool.clear()

    def _check_claimant(self, claimant: uuid.UUID | None) -> None:
        # The server acts as the token's claimant; asking for another is a mistake to
        # report, not to pass over in silence.
        if claimant is not None and claimant != self.bound_claimant():
            raise ValueError(
                f"over HTTP this client acts as its token's claimant {self.bound_claimant()}, "
                f"not {claimant}"
            )

    # Transport.

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        """Send ``body`` (JSON) to the API's ``path`` on the backend's pooled
        connections, and return the JSON answer; raise what an error status means.

        Reads are retried; anything else only when the request never left. Besides
        the backend's own operations, the site's other endpoints (a worker's beats).
        """
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params, doseq=True)
        idempotent = method == "GET"
        retry = urllib3.Retry(
            total=self.retries,
            connect=self.retries,  # the request never left: safe for any method
            read=self.retries if idempotent else 0,
            status=self.retries if idempotent else 0,
            other=0,
            status_forcelist=RETRY_STATUSES if idempotent else (),
            allowed_methods=None,
            backoff_factor=0.2,
            raise_on_status=False,
        )
        try:
            response = self._pool.request(
                method,
                url,
                body=None if body is None else json.dumps(body).encode(),
                headers=self._headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=read_timeout or self.timeout),
                retries=retry,
            )
        except urllib3.exceptions.HTTPError as error:
            raise BackendUnavailable(f"{method} {url}: {error}") from error
        return _answer(method, url, response)


def _queue_params(query: QueuesQuery) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": query.limit}
    if query.match_prefix:
        params["prefix"] = list(query.match_prefix)
    if query.match_exact:
        params["exact"] = list(query.match_exact)
    return params


def _answer(method: str, url: str, response: urllib3.BaseHTTPResponse) -> Any:
    """Return the JSON of a 200, or raise what the status means."""
    try:
        answer = json.loads(response.data) if response.data else {}
    except ValueError:
        answer = {}
    if response.status == 200 and isinstance(answer, dict):
        return answer
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    where = f"{method} {url}: {response.status}"
    if response.status == 409 and isinstance(answer, dict):
        raise wire.decode_dependency_error(answer)
    if response.status in (400, 413):
        raise ValueError(message or where)
    if response.status in (404, 405, 411, 414):
        # Not an outage: a wrong URL or a client the server does not understand.
        raise ValueError(f"{where} {message} (is {url} an EntroQ server's API?)".strip())
    if response.status in (401, 403):
        raise PermissionError(f"{where} {message}".strip())
    if response.status == 429:
        raise ServerBusy(f"{where} {message}".strip(), _retry_after(response))
    raise BackendUnavailable(f"{where} {message}".strip())


def _retry_after(response: urllib3.BaseHTTPResponse) -> float:
    """Return the pause a ``Retry-After`` asks for, in seconds (bounded; an HTTP date, or
    no header, counts as the default)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        seconds = BUSY_PAUSE_DEFAULT
    return min(max(seconds, BUSY_PAUSE_MIN), 60.0) if seconds == seconds else BUSY_PAUSE_DEFAULT


def _outcome(mod: Modification, answer: dict[str, Any]) -> ModifyOutcome:
    """Return what the server says became of ``mod``."""
    if answer.get("error") == "dependency":
        return wire.decode_dependency_error(answer)
    if "error" in answer:
        return ValueError(answer.get("message") or answer["error"])
    return _modified(mod, answer)


def _modified(mod: Modification, answer: dict[str, Any]) -> tuple[list[Task], list[Task]]:
    inserted = [wire.decode_task(t, "inserted") for t in answer["inserted"]]
    changed = [
        # A change that kept the value is answered without it: this side has it.
        wire.decode_task(t, "changed", known_value=c.known_value or b"")
        for t, c in zip(answer["changed"], mod.changes, strict=True)
    ]
    return inserted, changed


def _released(task: Task) -> TaskChange:
    return TaskChange(id=task.id, version=task.version)  # arriving now: released
