"""The HTTP API under ``/api/v1/``: every ``Backend`` operation, for workers elsewhere.

Requests carry ``Authorization: Bearer <token>``. A token claims and modifies as its
own claimant ID, and may act only on the queues its grants name (see
``queues.tokens``); a modification is checked against the queues its tasks are in
and the queues it moves them to. Bodies and answers are JSON in the form of
``queues.entroq.wire``; errors are ``{"error": code, "message": text}`` with 400, 401,
403, 404, 405, 409 (with every problem of a failed modification) or 413. The
OpenAPI document at ``/api/v1/openapi.json`` describes it all.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from queues import listing, metrics, openapi, tokens, waiting
from queues.conf import app_settings
from queues.entroq import (
    ClaimQuery,
    DependencyError,
    QueuesQuery,
    QueueStat,
    Task,
    TaskID,
    TasksQuery,
    wire,
)
from queues.entroq.django_backend import is_timeout, statement_timeout
from queues.entroq.modify import Modification
from queues.entroq.pauses import check_claim_patterns
from queues.entroq.tasks import (
    MAX_DURATION_SECONDS,
    MAX_QUEUE_LENGTH,
    TASK_STATES,
    check_queue,
    parse_json,
)
from queues.models import ApiToken
from queues.service import client

logger = logging.getLogger("queues.api")

MAX_CLAIM_QUEUES = 100
MAX_LIST_IDS = 100
# Tasks one claim takes at most, and modifications one request applies each on its own.
MAX_CLAIMED = 100
MAX_MODIFICATIONS = 1000
# Tasks one listing answers at most: page with `after` / `before` for more.
MAX_LISTED = 1000

View = Callable[[HttpRequest, ApiToken], HttpResponse]


def error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "message": message, **extra}, status=status)


def endpoint(
    operation: str, method: str
) -> Callable[[View], Callable[[HttpRequest], HttpResponse]]:
    """Make ``view(request, token)`` an API view: method, token, size, errors, metrics."""

    def decorate(view: View) -> Callable[[HttpRequest], HttpResponse]:
        @csrf_exempt  # tokens, not cookies: nothing a browser sends by itself
        @login_not_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            started = time.perf_counter()
            response = _answer(request, view, method)
            metrics.REQUESTS.labels(operation, str(response.status_code)).inc()
            metrics.LATENCY.labels(operation).observe(time.perf_counter() - started)
            return response

        wrapper.entroq_api = True  # type: ignore[attr-defined]  # see ApiMiddleware
        return wrapper

    return decorate


def _answer(request: HttpRequest, view: View, method: str) -> HttpResponse:
    if request.method != method:
        response = error(405, "method_not_allowed", f"use {method}")
        response["Allow"] = method
        return response
    seconds = app_settings().API_STATEMENT_SECONDS
    try:
        with statement_timeout(seconds):
            return _authorized(request, view)
    except (OperationalError, InterfaceError) as down:
        if is_timeout(down):
            logger.warning("api: a statement ran out of time: %s", down)
            message = f"a query took over {seconds:g} s and was stopped; try again later"
            response = error(503, "timeout", message)
            response["Retry-After"] = "5"
            return response
        # The database is away (a restart, a failover): say so, and when to try again.
        logger.warning("api: database error: %s", down)
        response = error(503, "unavailable", "the task store is unavailable; try again")
        response["Retry-After"] = "1"
        return response


def _authorized(request: HttpRequest, view: View) -> HttpResponse:
    token = _token(request)
    if token is None:
        response = error(401, "unauthorized", "send Authorization: Bearer <API token>")
        response["WWW-Authenticate"] = 'Bearer realm="entroq"'
        return response
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length and request.headers.get("Transfer-Encoding"):
        # Without a length, Django would read the body as empty: refuse, never drop it.
        return error(411, "length_required", "send the body with a Content-Length")
    limit = app_settings().API_MAX_BODY_BYTES
    if not (length or "0").isdigit() or int(length or "0") > limit:
        return error(413, "too_large", f"the body is over the limit of {limit} bytes")
    try:
        return view(request, token)
    except tokens.Forbidden as refused:
        return error(403, "forbidden", str(refused))
    except DependencyError as conflict:
        return JsonResponse(wire.encode_dependency_error(conflict), status=409)
    except (ValueError, TypeError) as bad:
        return error(400, "bad_request", str(bad))


def _token(request: HttpRequest) -> ApiToken | None:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return tokens.authenticate(secret.strip())


def _body(request: HttpRequest) -> dict[str, Any]:
    # request.read(), not request.body: the API has its own size limit, checked above.
    raw = request.read()
    try:
        body = parse_json(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"the body is not JSON ({error})") from None
    if not isinstance(body, dict):
        raise ValueError("body: expected a JSON object")
    return body


# Operations.


@endpoint("claim", "POST")
def claim(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Claim a task from one of ``queues`` for ``duration`` seconds, waiting up to ``wait``.

    Waiting claims are bounded in each process, in all and by token (see
    :func:`queues.waiting.bounds`), so that they never hold every thread: a claim beyond the
    bounds is tried at once and, finding nothing, answered 429 with ``Retry-After``.
    A waiting claim whose client has gone stops waiting, and a task it claimed
    meanwhile is released.
    """
    body = _body(request)
    unknown = set(body) - {"queues", "duration", "wait", "limit"}
    if unknown:
        raise ValueError(f"body: unknown field {sorted(unknown)[0]!r}")
    limit = body.get("limit", 1)
    if isinstance(limit, float) and limit.is_integer():  # JSON's 2.0 is the integer 2
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIMED:
        raise ValueError(f"limit: expected an integer from 1 to {MAX_CLAIMED}")
    queues = body.get("queues")
    if not isinstance(queues, list) or not 1 <= len(queues) <= MAX_CLAIM_QUEUES:
        raise ValueError(f"queues: expected a list of 1 to {MAX_CLAIM_QUEUES} queue names")
    names = tuple(dict.fromkeys(_queue(q, f"queues[{i}]") for i, q in enumerate(queues)))
    check_claim_patterns(names)
    duration = wire.param_number(body.get("duration"), "duration", 30, high=MAX_DURATION_SECONDS)
    max_wait = app_settings().API_MAX_WAIT_SECONDS
    wait = min(wire.param_number(body.get("wait"), "wait", 0, high=MAX_DURATION_SECONDS), max_wait)
    tokens.require(token, "claim", names)
    metrics.saw_claimant(token.claimant)
    query = ClaimQuery(queues=names, claimant=token.claimant, duration=duration, limit=limit)
    backend = client().backend
    if wait <= 0:
        claimed = backend.try_claim_many(query)
    else:
        connection = request.META.get("gunicorn.socket")
        with waiting.slot(token.claimant) as admitted:
            if admitted:
                # Waits for the first; takes up to the limit when one comes.
                claimed, gone = waiting.wait_for_tasks(backend, query, wait, connection)
        if not admitted:
            claimed = backend.try_claim_many(query)
            if not claimed:
                metrics.CLAIMS.labels("refused").inc()
                return _too_many_waiting()
        elif gone:
            for task in claimed:
                waiting.release(backend, task)
            metrics.CLAIMS.labels("abandoned").inc()
            return JsonResponse({"task": None})  # nobody is there to read it
    metrics.CLAIMS.labels("claimed" if claimed else "empty").inc()
    answer: dict[str, Any] = {"task": wire.encode_task(claimed[0]) if claimed else None}
    if "limit" in body:
        answer["tasks"] = [wire.encode_task(t) for t in claimed]
    return JsonResponse(answer)


def _too_many_waiting() -> JsonResponse:
    per_process, per_token = waiting.bounds()
    retry = max(1, math.ceil(app_settings().API_CLAIM_RETRY_AFTER_SECONDS))
    response = error(
        429,
        "too_many_waiting",
        f"no task now, and this server holds as many waiting claims as it may ({per_process} "
        f"a process, {per_token} a token): try again after {retry} s",
    )
    response["Retry-After"] = str(retry)
    return response


@endpoint("modify", "POST")
def modify(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Apply inserts, changes, deletes and depends all or nothing, as the token's claimant."""
    try:
        mod = wire.decode_modification(_body(request), token.claimant)
        eq = client()
        mod.check(eq.backend.max_value_bytes)
    except ValueError:
        metrics.MODIFICATIONS.labels("invalid").inc()
        raise
    _authorize(token, mod)
    try:
        inserted, changed = eq.backend.modify(mod)
    except DependencyError:
        metrics.MODIFICATIONS.labels("conflict").inc()
        raise
    metrics.MODIFICATIONS.labels("done").inc()
    return JsonResponse(_modified(mod, inserted, changed))


@endpoint("modify_each", "POST")
def modify_each(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Apply each modification all or nothing on its own, as the token's claimant, and
    answer each one's outcome in order: finished tasks' deletions are applied together,
    and one refused fails no other. A modification the token may not make refuses the
    whole request (403), before anything is applied."""
    body = _body(request)
    unknown = set(body) - {"modifications"}
    if unknown:
        raise ValueError(f"body: unknown field {sorted(unknown)[0]!r}")
    raw = body.get("modifications")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MODIFICATIONS:
        raise ValueError(f"modifications: expected a list of 1 to {MAX_MODIFICATIONS}")
    mods = [wire.decode_modification(m, token.claimant) for m in raw]
    outcomes: list[dict[str, Any] | None] = [None] * len(mods)
    allowed: list[int] = []
    for index, mod in enumerate(mods):
        try:
            _authorize(token, mod)  # a task it may not see is answered as missing
        except DependencyError as hidden:
            outcomes[index] = wire.encode_dependency_error(hidden)
            metrics.MODIFICATIONS.labels("conflict").inc()
        else:
            allowed.append(index)
    applied = client().backend.modify_each([mods[i] for i in allowed])
    for index, outcome in zip(allowed, applied, strict=True):
        if isinstance(outcome, DependencyError):
            outcomes[index], kind = wire.encode_dependency_error(outcome), "conflict"
        elif isinstance(outcome, ValueError):
            outcomes[index] = {"error": "bad_request", "message": str(outcome)}
            kind = "invalid"
        else:
            outcomes[index], kind = _modified(mods[index], *outcome), "done"
        metrics.MODIFICATIONS.labels(kind).inc()
    return JsonResponse({"outcomes": outcomes})


def _modified(mod: Modification, inserted: list[Task], changed: list[Task]) -> dict[str, Any]:
    return {
        "inserted": [wire.encode_task(t) for t in inserted],
        # A change that kept the value is answered without it: the client has it, and
        # the answer stays as small as the request.
        "changed": [
            {**wire.encode_task(t), "value": None} if c.value is None else wire.encode_task(t)
            for t, c in zip(changed, mod.changes, strict=True)
        ],
    }


def _authorize(token: ApiToken, mod: Modification) -> None:
    """Check every queue the modification touches: where tasks go, and where they are.

    A referenced task the token has no grant for at all is answered as missing, and
    one at another version as stale, exactly as the store would answer (409), so a
    token learns nothing of queues it may not see. Checking versions here also makes
    the check sound: a task that changes queue afterwards changes version, and the
    store then refuses the modification.
    """
    tokens.require(token, "insert", {d.queue for d in mod.inserts})
    # Where changes send tasks; a change that keeps its queue is checked below, there.
    tokens.require(token, "change", {c.queue for c in mod.changes if c.queue is not None})
    acting = {
        action
        for action, targets in (
            ("change", mod.changes),
            ("delete", mod.deletes),
            ("read", mod.depends),
        )
        if targets
    }
    if all(tokens.allows(token, action, "") for action in acting):
        # Granted in every queue: there is nothing to hide, and the store answers
        # every problem itself, exactly as below, without a lookup first.
        return
    ids = [c.id for c in mod.changes] + [d.id for d in mod.deletes + mod.depends]
    ids += [d.id for d in mod.inserts if d.id is not None]
    current = {t.id: t for t in client().tasks(ids=ids, omit_values=True)} if ids else {}
    conflict = DependencyError()
    held: list[TaskID] = []
    for action, wanted, problems in (
        *(("change", c.id_version(), conflict.changes) for c in mod.changes),
        *(("delete", d, conflict.deletes) for d in mod.deletes),
        *(("read", d, conflict.depends) for d in mod.depends),
    ):
        task = current.get(wanted.id)
        if task is None or not tokens.sees(token, task.queue) or task.version != wanted.version:
            problems.append(wanted)
            continue
        tokens.require(token, action, [task.queue])
        if action != "read" and task.claimant not in (None, token.claimant):
            held.append(wanted)
    if conflict.is_empty():
        return  # the store checks the rest, all at once
    # Answer with every problem, as the store would.
    conflict.inserts = [TaskID(d.id, 0) for d in mod.inserts if d.id in current]
    now = client().time()
    conflict.claims = [w for w in held if current[w.id].at > now]
    raise conflict


@endpoint("tasks", "GET")
def tasks(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """List the tasks of a queue, or look tasks up by ID (only those the token may read).

    An answer carries at most ``API_LIST_VALUE_BYTES`` of values (a task with more
    comes alone). When more tasks may match, ``next`` holds the parameters that ask
    for them (``after`` or ``before`` for a queue, ``id`` for a lookup). The sizes of
    the values come first, so values beyond the budget are not read.
    """
    get = request.GET
    queue = get.get("queue", "")
    ids = [_any_uuid(raw, f"id[{i}]") for i, raw in enumerate(get.getlist("id"))]
    ids = [i for i in ids if i.int]  # the nil UUID is no task
    if len(ids) > MAX_LIST_IDS:
        raise ValueError(f"id: at most {MAX_LIST_IDS} IDs at once")
    if queue:
        _queue(queue, "queue")
        tokens.require(token, "read", [queue])
    elif not ids:
        return JsonResponse({"tasks": []})  # no queue and no IDs: no tasks
    claimant = get.get("claimant")
    state = get.get("state", "")
    if state and state not in TASK_STATES:
        raise ValueError(f"state: one of {', '.join(TASK_STATES)}")
    query = TasksQuery(
        queue=queue,
        claimant=_any_uuid(claimant, "claimant") if claimant else None,
        limit=min(wire.param_int(get.get("limit"), "limit", 0) or MAX_LISTED, MAX_LISTED),
        ids=tuple(ids),
        omit_values=wire.param_flag(get.get("omit_values"), "omit_values"),
        state=state,
        min_attempt=wire.param_int(get.get("min_attempt"), "min_attempt", 0),
        newest_first=wire.param_flag(get.get("newest_first"), "newest_first"),
        after=_bound(get.get("after"), "after"),
        before=_bound(get.get("before"), "before"),
        preview=wire.param_int(get.get("preview"), "preview", 0),
    )
    pieces = listing.answer(
        client().backend,
        query,
        lambda queue: tokens.allows(token, "read", queue),
        app_settings().API_LIST_VALUE_BYTES,
    )
    return HttpResponse(pieces, content_type="application/json")


def _bound(raw: str | None, name: str) -> tuple[datetime, uuid.UUID] | None:
    return None if raw is None else wire.decode_bound(raw, name)


def _readable_stats(request: HttpRequest, token: ApiToken) -> dict[str, QueueStat]:
    """Return the stats of the queues a request asks for and its token may read.

    Without a prefix or an exact name, the token's own prefixes narrow the query; the
    limit counts readable queues only.
    """
    get = request.GET
    prefixes = tuple(_prefix(p, "prefix") for p in get.getlist("prefix"))
    exact = tuple(_queue(q, "exact") for q in get.getlist("exact"))
    limit = wire.param_int(get.get("limit"), "limit", 0)
    if not (prefixes or exact):
        prefixes = tokens.readable_prefixes(token)
        if not prefixes:
            return {}
    query = QueuesQuery(match_prefix=prefixes, match_exact=exact)
    found = client().backend.queue_stats(query)
    readable = {q: s for q, s in found.items() if tokens.allows(token, "read", q)}
    return dict(list(readable.items())[:limit]) if limit else readable


@endpoint("queues", "GET")
def queues(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Return the size of each matching queue the token may read."""
    found = _readable_stats(request, token)
    return JsonResponse({"queues": {q: s.size for q, s in found.items()}})


@endpoint("stats", "GET")
def stats(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Return the stats of each matching queue the token may read."""
    found = _readable_stats(request, token)
    return JsonResponse({"stats": {q: wire.encode_stat(s) for q, s in found.items()}})


@endpoint("time", "GET")
def now(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Return the store's clock."""
    return JsonResponse({"time": wire.encode_time(client().time())})


@endpoint("whoami", "GET")
def whoami(request: HttpRequest, token: ApiToken) -> HttpResponse:
    """Return the token's user, name, claimant ID and grants."""
    return JsonResponse(
        {
            "user": token.user.get_username(),
            "token": token.name,
            "claimant": str(token.claimant),
            "grants": token.grants,
            "max_value_bytes": client().backend.max_value_bytes,
            "max_wait": app_settings().API_MAX_WAIT_SECONDS,
        }
    )


@csrf_exempt
@login_not_required
def schema(request: HttpRequest) -> HttpResponse:
    """Return the OpenAPI document of this API."""
    # The API's root is where the project mounted it (``/api/v1`` in this site's).
    root = request.build_absolute_uri(request.path).removesuffix("/openapi.json")
    return JsonResponse(openapi.document(root))


@csrf_exempt
@login_not_required
def not_found(request: HttpRequest, rest: str) -> HttpResponse:
    return error(404, "not_found", f"no API operation {rest!r}")


def _any_uuid(raw: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValueError(f"{name}: not a UUID: {raw[:64]!r}") from None


def _prefix(raw: str, name: str) -> str:
    if len(raw) > MAX_QUEUE_LENGTH or "\x00" in raw:
        raise ValueError(f"{name}: at most {MAX_QUEUE_LENGTH} characters, without NUL")
    return raw


def _queue(raw: Any, name: str) -> str:
    try:
        return check_queue(raw, name)
    except (TypeError, ValueError) as bad:
        raise ValueError(f"{name}: {bad}") from None
