"""The OpenAPI 3.1 document of the HTTP API (``/api/v1/openapi.json``).

Kept beside ``queues.api`` and checked against the live server by a property-based
test (``tests/api/test_openapi.py``), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from queues.entroq.tasks import MAX_DURATION_SECONDS, MAX_ERR_LENGTH, MAX_QUEUE_LENGTH
from queues.entroq.wire import BOUND_PATTERN

JSON = dict[str, Any]

QUEUE: JSON = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_QUEUE_LENGTH,
    "pattern": "^[^\\u0000]*$",
}
UUID: JSON = {"type": "string", "format": "uuid"}
# A task's ID: any UUID but the nil one, which EntroQ reads as "none".
TASK_ID: JSON = {**UUID, "not": {"const": "00000000-0000-0000-0000-000000000000"}}
BOUND: JSON = {
    "type": "string",
    "pattern": BOUND_PATTERN,
    "description": "<microseconds since 1970>.<the task ID in 32 hex digits>",
}
COUNT: JSON = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
TIME: JSON = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
VALUE: JSON = {
    "type": "string",
    "contentEncoding": "base64",
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}
VERSION: JSON = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
ATTEMPT: JSON = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
ERR: JSON = {"type": "string", "maxLength": MAX_ERR_LENGTH, "pattern": "^[^\\u0000]*$"}
SECONDS: JSON = {"type": "number", "minimum": 0, "maximum": MAX_DURATION_SECONDS}
KEEP = "null or absent: keep what is stored"
# An insert or a change arrives at a time or after a duration, not both.
AT_OR_ARRIVAL_IN: JSON = {
    "not": {
        "properties": {"at": TIME, "arrival_in": SECONDS},
        "required": ["at", "arrival_in"],
    }
}


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: JSON, required: list[str] | None = None) -> JSON:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


TASK: JSON = {
    "queue": {"type": "string"},
    "id": UUID,
    "version": VERSION,
    "at": TIME,
    "claimant": {"oneOf": [UUID, {"type": "null"}]},
    "claims": {"type": "integer", "minimum": 0},
    "value": VALUE,
    "created": TIME,
    "modified": TIME,
    "attempt": ATTEMPT,
    "err": {"type": "string"},
}

SCHEMAS: JSON = {
    "Task": obj(TASK, list(TASK)),
    "ChangedTask": obj({**TASK, "value": {"oneOf": [VALUE, {"type": "null"}]}}, list(TASK)),
    "TaskID": obj({"id": TASK_ID, "version": VERSION}, ["id", "version"]),
    "Insert": obj(
        {
            "queue": QUEUE,
            "value": VALUE,
            "at": {"oneOf": [TIME, {"type": "null"}], "description": "null or absent: now"},
            "arrival_in": {
                "oneOf": [SECONDS, {"type": "null"}],
                "description": "instead of at: seconds after the store's clock",
            },
            "id": {"oneOf": [TASK_ID, {"type": "null"}], "description": "null or absent: new"},
            "attempt": ATTEMPT,
            "err": ERR,
        },
        ["queue"],
    )
    | AT_OR_ARRIVAL_IN,
    "Change": obj(
        {
            "id": TASK_ID,
            "version": VERSION,
            "queue": {"oneOf": [QUEUE, {"type": "null"}], "description": KEEP},
            "value": {"oneOf": [VALUE, {"type": "null"}], "description": KEEP},
            "at": {
                "oneOf": [TIME, {"type": "null"}],
                "description": "with arrival_in null or absent too: now, which releases a claim",
            },
            "arrival_in": {
                "oneOf": [SECONDS, {"type": "null"}],
                "description": "instead of at: seconds after the store's clock (a renewal)",
            },
            "attempt": {"oneOf": [ATTEMPT, {"type": "null"}], "description": KEEP},
            "err": {"oneOf": [ERR, {"type": "null"}], "description": KEEP},
        },
        ["id", "version"],
    )
    | AT_OR_ARRIVAL_IN,
    "Modification": obj(
        {
            "inserts": {"type": "array", "items": ref("Insert")},
            "changes": {"type": "array", "items": ref("Change")},
            "deletes": {"type": "array", "items": ref("TaskID")},
            "depends": {"type": "array", "items": ref("TaskID")},
        }
    ),
    "Modified": obj(
        {
            "inserted": {"type": "array", "items": ref("Task")},
            "changed": {
                "type": "array",
                "items": ref("ChangedTask"),
                "description": "in the order of the changes; a change that kept the value "
                "is answered with a null value (the client has it)",
            },
        },
        ["inserted", "changed"],
    ),
    "ClaimRequest": obj(
        {
            "queues": {"type": "array", "items": QUEUE, "minItems": 1, "maxItems": 100},
            "duration": {**SECONDS, "description": "the lease, in seconds (default 30)"},
            "wait": {
                **SECONDS,
                "description": "seconds to wait for a task (default 0: answer at once); "
                "the server waits at most API_MAX_WAIT_SECONDS (30 by default), and only "
                "while it holds fewer waiting claims than its bounds (else: 429)",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "claim up to this many tasks, each with its own version and "
                "lease (the wait is for the first; the answer then has `tasks`)",
            },
        },
        ["queues"],
    ),
    "Claimed": obj(
        {
            "task": {"oneOf": [ref("Task"), {"type": "null"}]},
            "tasks": {
                "type": "array",
                "items": ref("Task"),
                "description": "every task claimed, the first being `task` (when the "
                "request gave a limit)",
            },
        },
        ["task"],
    ),
    "Modifications": obj(
        {
            "modifications": {
                "type": "array",
                "items": ref("Modification"),
                "minItems": 1,
                "maxItems": 1000,
            }
        },
        ["modifications"],
    ),
    "Outcomes": obj(
        {
            "outcomes": {
                "type": "array",
                "items": {"anyOf": [ref("Modified"), ref("Conflict"), ref("Error")]},
                "description": "one a modification, in order: what it inserted and changed, "
                "or why it was refused (dependency, bad_request)",
            }
        },
        ["outcomes"],
    ),
    "QueueStat": obj(
        {
            "size": {"type": "integer"},
            "available": {"type": "integer"},
            "claimed": {"type": "integer"},
            "future": {"type": "integer"},
            "max_claims": {"type": "integer"},
            "earliest": {"oneOf": [TIME, {"type": "null"}]},
        },
        ["size", "available", "claimed", "future", "max_claims", "earliest"],
    ),
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
    },
    "Conflict": obj(
        {
            "error": {"const": "dependency"},
            "message": {"type": "string"},
            **{
                label: {"type": "array", "items": ref("TaskID")}
                for label in ("inserts", "depends", "deletes", "changes", "claims")
            },
        },
        ["error", "message", "inserts", "depends", "deletes", "changes", "claims"],
    ),
}


def answer(description: str, schema: JSON) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def failures(*statuses: int) -> JSON:
    texts = {
        400: "Bad input; the message names the field",
        401: "No valid token",
        403: "The token may not act on a queue involved",
        404: "No such thing, or none the token may see",
        409: "The modification cannot proceed; every problem is listed",
        413: "The body is too large",
        503: "The task store is unavailable (see Retry-After)",
    }
    return {
        str(status): answer(texts[status], ref("Conflict" if status == 409 else "Error"))
        for status in statuses
    }


def query(
    name: str, schema: JSON, description: str, *, many: bool = False, most: int | None = None
) -> JSON:
    param: JSON = {"name": name, "in": "query", "required": False, "description": description}
    if many:
        array: JSON = {"type": "array", "items": schema}
        if most is not None:
            array["maxItems"] = most
        param.update(schema=array, style="form", explode=True)
    else:
        param["schema"] = schema
    return param


LIMIT = query("limit", COUNT, "at most this many (0: all)")
TASKS_LIMIT = query(
    "limit", COUNT, "at most this many (0 or over 1000: 1000; then go on from next)"
)
# Where a listing goes on: the parameters to send again, changed so.
NEXT: JSON = {
    "oneOf": [
        obj({"after": BOUND}, ["after"]),
        obj({"before": BOUND}, ["before"]),
        obj({"id": {"type": "array", "items": UUID, "minItems": 1, "maxItems": 100}}, ["id"]),
    ],
    "description": "present when more tasks may match: send the same request again with "
    "these parameters in place of the ones of the same name (after or before for a "
    "queue's tasks, id for a lookup by ID); absent, the listing is complete",
}
TASKS_ANSWER = answer(
    "Tasks, in order, with at most API_LIST_VALUE_BYTES (8 MiB by default) of values in all "
    "(base64 makes that a third more); a task with a larger value comes alone",
    obj({"tasks": {"type": "array", "items": ref("Task")}, "next": NEXT}, ["tasks"]),
)
TOO_MANY_WAITING: JSON = {
    **answer(
        "No task now, and the server holds as many waiting claims as it may (in this "
        "process: API_MAX_WAITING_CLAIMS, by default half its threads; for this token: "
        "API_MAX_WAITING_CLAIMS_PER_TOKEN, by default half of that). Claim again after "
        "Retry-After",
        ref("Error"),
    ),
    "headers": {
        "Retry-After": {
            "description": "seconds to wait before claiming again "
            "(API_CLAIM_RETRY_AFTER_SECONDS, 1 by default)",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def with_responses(described: JSON, **responses: JSON) -> JSON:
    """Return the operation ``described`` with ``responses`` (by status) added."""
    return {**described, "responses": {**described["responses"], **responses}}


QUEUE_FILTERS = [
    query(
        "prefix",
        {**QUEUE, "minLength": 0},
        "queues starting with this (repeat; none: the queues the token may read)",
        many=True,
    ),
    query("exact", QUEUE, "this queue (repeat)", many=True),
    LIMIT,
]
FLAG: JSON = {"type": "boolean"}


def operation(summary: str, ok: JSON, *statuses: int, **extra: Any) -> JSON:
    return {
        "summary": summary,
        "security": [{"token": []}],
        "responses": {"200": ok, **failures(400, 401, 413, 503, *statuses)},
        **extra,
    }


def body(name: str) -> JSON:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


# Live workers (queues.api_workers): what a worker's beat carries, and what is listed.
BIG_COUNT: JSON = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
TEXT: JSON = {"type": "string", "pattern": "^[^\\u0000]*$"}
# Text that must say something: not only white space.
SAID: JSON = {"type": "string", "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}
WORKER_BEAT: JSON = obj(
    {
        "id": UUID,
        "host": {**SAID, "maxLength": 255},
        "pid": COUNT,
        "version": {**SAID, "maxLength": 50},
        "handler": {**TEXT, "maxLength": 255},
        "queues": {"type": "array", "items": QUEUE, "minItems": 1, "maxItems": 100},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 10_000},
        "prefetch": {"type": "integer", "minimum": 0, "maximum": 10_000},
        "beat_seconds": {"type": "number", "minimum": 1, "maximum": 300},
        "done": BIG_COUNT,
        "failed": BIG_COUNT,
        "holding": COUNT,
        "held": {"type": "array", "items": UUID, "maxItems": 100},
        "exited": {"type": "boolean", "description": "the worker stopped: its last beat"},
    },
    ["id", "host", "pid", "version", "queues"],
)
WORKER: JSON = {
    "type": "object",
    "required": ["id", "state", "host", "pid", "queues", "last_beat", "done", "failed"],
    "properties": {
        "id": UUID,
        "state": {"enum": ["alive", "stopping", "stale", "exited"]},
        "queues": {"type": "array", "items": {"type": "string"}},
        "held": {"type": "array", "items": UUID},
    },
}
NOT_FOUND = answer("No such worker the token may see", ref("Error"))
WORKER_PATHS: JSON = {
    "/workers": {
        "get": operation(
            "The worker processes whose every queue the token may read, the live first",
            answer(
                "Workers",
                obj({"workers": {"type": "array", "items": WORKER}}, ["workers"]),
            ),
            parameters=[query("queue", QUEUE, "only workers consuming this queue")],
        )
    },
    "/workers/beat": {
        "post": operation(
            "A worker's beat (its first announces it); answers whether to stop",
            answer("Whether an operator asked it to stop", obj({"stop": FLAG}, ["stop"])),
            403,
            requestBody=body("WorkerBeat"),
            description="Needs a claim grant on every queue of the worker; only the "
            "token that announced a worker beats for it. At most 100 queues and 100 held "
            "task IDs (holding counts the rest).",
        )
    },
    "/workers/stop": {
        "post": with_responses(
            operation(
                "Ask a worker to stop after the tasks in hand, at its next beat",
                answer(
                    "What came of it, and the worker",
                    obj({"message": {"type": "string"}, "worker": WORKER}, ["message", "worker"]),
                ),
                403,
                requestBody=body("WorkerStop"),
                description="Needs a claim grant on every queue of the worker; audited.",
            ),
            **{"404": NOT_FOUND},
        )
    },
}


# Pauses (queues.api_pauses): a queue, prefix/* or *, as claims name them.
PAUSES: JSON = obj(
    {"queues": {"type": "array", "items": QUEUE, "minItems": 1, "maxItems": 100}},
    ["queues"],
)
PAUSED: JSON = answer(
    "Paused (or resumed) now, and already so",
    obj(
        {
            "changed": {"type": "array", "items": {"type": "string"}},
            "unchanged": {"type": "array", "items": {"type": "string"}},
        },
        ["changed", "unchanged"],
    ),
)
PAUSE_PATHS: JSON = {
    "/pause": {
        "post": operation(
            "Stop claims from queues (prefix/* for every queue under it, * for all)",
            PAUSED,
            403,
            requestBody=body("Pauses"),
            description="Needs the pause grant on each; audited under the token's user.",
        )
    },
    "/resume": {
        "post": operation(
            "End pauses, as they were given; the claims waiting on them try again at once",
            PAUSED,
            403,
            requestBody=body("Pauses"),
            description="Needs the pause grant on each; audited under the token's user.",
        )
    },
    "/paused": {
        "get": operation(
            "The pauses in force over queues the token has a grant for",
            answer(
                "Pauses",
                obj(
                    {
                        "paused": {
                            "type": "array",
                            "items": obj(
                                {
                                    "queue": {"type": "string"},
                                    "since": {**TIME, "type": ["string", "null"]},
                                },
                                ["queue", "since"],
                            ),
                        }
                    },
                    ["paused"],
                ),
            ),
        )
    },
}

# Undo (queues.api_undo): the kept actions, and putting one back.
UNDOABLE: JSON = obj(
    {
        "id": {"type": "integer", "minimum": 1},
        "created": TIME,
        "user": {"type": "string"},
        "action": {"enum": ["delete", "move", "retry"]},
        "scope": {"type": "string", "description": "the prefix of every queue it touched"},
        "forced": FLAG,
        "remaining": BIG_COUNT,
        "undone": {**TIME, "type": ["string", "null"]},
    },
    ["id", "created", "user", "action", "scope", "forced", "remaining", "undone"],
)
UNDO_PATHS: JSON = {
    "/undoable": {
        "get": operation(
            "The latest deletions, moves and retries kept for undo, over queues the token reads",
            answer(
                "Undoable actions, newest first",
                obj({"undoable": {"type": "array", "items": UNDOABLE}}, ["undoable"]),
            ),
            parameters=[query("limit", COUNT, "at most this many (0: 50; at most 200)")],
        )
    },
    "/undo": {
        "post": with_responses(
            operation(
                "Put back what an action deleted, moved or retried, up to 5,000 tasks a call",
                answer(
                    "What was put back, what was left out and why, and how many remain",
                    obj(
                        {
                            "done": {"type": "array", "items": ref("TaskID")},
                            "conflicts": {
                                "type": "array",
                                "items": {
                                    "allOf": [
                                        ref("TaskID"),
                                        obj({"why": {"type": "string"}}, ["why"]),
                                    ]
                                },
                            },
                            "remaining": BIG_COUNT,
                        },
                        ["done", "conflicts", "remaining"],
                    ),
                ),
                403,
                404,
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": obj({"undoable": {**BIG_COUNT, "minimum": 1}}, ["undoable"])
                        }
                    },
                },
                description="Needs insert (a delete), change (a move) or insert and delete "
                "(a retry) over every queue it touched, and the force permission for an "
                "action on held tasks; audited under the token's user. Call again while "
                "remaining is over 0.",
            ),
            **{"409": answer("A bulk run of the action is still running", ref("Error"))},
        )
    },
}


def document(server: str) -> JSON:
    """Return the OpenAPI document, with ``server`` as the API's base URL."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "EntroQ",
            "version": "1",
            "description": "EntroQ's task store over HTTP: claims are leases; every "
            "modification is all or nothing and checks task versions.",
        },
        "servers": [{"url": server}],
        "components": {
            "schemas": {
                **SCHEMAS,
                "WorkerBeat": WORKER_BEAT,
                "WorkerStop": obj({"id": UUID}, ["id"]),
                "Pauses": PAUSES,
            },
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/claim": {
                "post": with_responses(
                    operation(
                        "Claim a task, waiting up to `wait` seconds for one",
                        answer("The claimed task, or null", ref("Claimed")),
                        403,
                        requestBody=body("ClaimRequest"),
                        description="A claim with a wait holds a server thread while it "
                        "waits, so the server bounds how many wait at once. Beyond the "
                        "bounds, a claim is tried at once: it gets a task if one is there, "
                        "and 429 with Retry-After if not. A waiting claim whose client "
                        "closes its connection stops waiting; a task claimed for it "
                        "meanwhile is released.",
                    ),
                    **{"429": TOO_MANY_WAITING},
                )
            },
            "/modify": {
                "post": operation(
                    "Insert, change, delete and depend on tasks, all or nothing",
                    answer("The inserted and changed tasks", ref("Modified")),
                    403,
                    409,
                    requestBody=body("Modification"),
                )
            },
            "/modify/each": {
                "post": operation(
                    "Apply modifications each all or nothing on its own",
                    answer("Each modification's outcome, in order", ref("Outcomes")),
                    403,
                    requestBody=body("Modifications"),
                    description="Finished tasks' deletions are applied together, in one "
                    "statement and one commit; a modification that is refused fails no "
                    "other. One the token may not make refuses the whole request (403) "
                    "before anything is applied.",
                )
            },
            "/tasks": {
                "get": operation(
                    "List a queue's tasks, or look tasks up by ID",
                    TASKS_ANSWER,
                    403,
                    description="An answer carries at most API_LIST_VALUE_BYTES of values "
                    "(8 MiB by default; a larger task comes alone) and at most `limit` "
                    "tasks; `next` says how to ask for the rest. The server reads no "
                    "more values than the answer can carry.",
                    parameters=[
                        query("queue", QUEUE, "the queue (or give id)"),
                        query("id", UUID, "a task ID (repeat; at most 100)", many=True, most=100),
                        query("claimant", UUID, "only tasks it holds or that are available"),
                        TASKS_LIMIT,
                        query("omit_values", FLAG, "leave values out"),
                        query(
                            "state",
                            {"enum": ["available", "claimed", "future"]},
                            "only tasks in this state",
                        ),
                        query("min_attempt", COUNT, "attempt ≥"),
                        query("newest_first", FLAG, "order by at, id descending"),
                        query("after", BOUND, "only tasks after this (at, id) bound"),
                        query("before", BOUND, "only tasks before this (at, id) bound"),
                        query("preview", COUNT, "cut values to this many bytes"),
                    ],
                )
            },
            "/queues": {
                "get": operation(
                    "The size of each matching queue",
                    answer(
                        "Sizes by queue",
                        obj(
                            {
                                "queues": {
                                    "type": "object",
                                    "additionalProperties": {"type": "integer"},
                                }
                            },
                            ["queues"],
                        ),
                    ),
                    parameters=QUEUE_FILTERS,
                )
            },
            "/stats": {
                "get": operation(
                    "The stats of each matching queue",
                    answer(
                        "Stats by queue",
                        obj(
                            {"stats": {"type": "object", "additionalProperties": ref("QueueStat")}},
                            ["stats"],
                        ),
                    ),
                    parameters=QUEUE_FILTERS,
                )
            },
            "/time": {
                "get": operation("The store's clock", answer("Now", obj({"time": TIME}, ["time"])))
            },
            "/whoami": {
                "get": operation(
                    "The token: its user, name, claimant ID and grants",
                    answer(
                        "The token",
                        {
                            "type": "object",
                            "required": ["user", "token", "claimant", "grants"],
                            "properties": {"claimant": UUID},
                        },
                    ),
                )
            },
            **WORKER_PATHS,
            **PAUSE_PATHS,
            **UNDO_PATHS,
        },
    }
