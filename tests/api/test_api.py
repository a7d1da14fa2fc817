"""The HTTP API: operations, auth and grants, and every kind of error."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django.live_server_helper import LiveServer

from queues import tokens
from queues.entroq import EntroQ, HTTPBackend, inserting_into
from queues.service import client
from tests.conftest import Api
from tests.helpers import task_table_locked

B64 = base64.b64encode
T = "2026-01-01T00:00:00Z"


def insert(api: Api, queue: str, value: bytes = b"v", **extra: Any) -> dict[str, Any]:
    response = api.post(
        "modify", {"inserts": [{"queue": queue, "value": B64(value).decode(), **extra}]}
    )
    assert response.status_code == 200, response.content
    return response.json()["inserted"][0]  # type: ignore[no-any-return]


def test_a_task_travels_with_base64_values_and_microsecond_times(api: Api) -> None:
    task = insert(api, "jobs", b"\x00\xffbytes", attempt=2, err="e")
    assert task["value"] == B64(b"\x00\xffbytes").decode()
    assert task["at"].endswith("Z")
    assert len(task["at"].split(".")[1]) == len("123456Z")
    assert (task["version"], task["attempt"], task["err"]) == (0, 2, "e")
    uuid.UUID(task["id"])

    listed = api.get("tasks", {"queue": "jobs"}).json()["tasks"]
    assert listed == [task]
    assert api.get("queues").json() == {"queues": {"jobs": 1}}
    stats = api.get("stats", {"prefix": "j"}).json()["stats"]["jobs"]
    assert stats | {"earliest": None} == {
        "size": 1,
        "available": 1,
        "claimed": 0,
        "future": 0,
        "max_claims": 0,
        "earliest": None,
    }
    assert api.get("time").json()["time"].endswith("Z")


def test_claim_modify_and_finish_as_the_tokens_claimant(api: Api) -> None:
    insert(api, "work")
    claimant = api.get("whoami").json()["claimant"]

    claimed = api.post("claim", {"queues": ["work"], "duration": 60}).json()["task"]
    assert claimed["claimant"] == claimant
    assert claimed["claims"] == 1
    assert api.post("claim", {"queues": ["work"]}).json() == {"task": None}

    renewed = api.post(
        "modify",
        {
            "changes": [
                {
                    "id": claimed["id"],
                    "version": claimed["version"],
                    "queue": "work",
                    "at": "2100-01-01T00:00:00Z",
                }
            ]
        },
    ).json()["changed"][0]
    assert renewed["value"] is None, "a change without a value keeps it, and it is not sent"
    stored = api.get("tasks", {"queue": "work"}).json()["tasks"][0]
    assert stored["value"] == claimed["value"]
    done = api.post("modify", {"deletes": [{"id": renewed["id"], "version": renewed["version"]}]})
    assert done.json() == {"inserted": [], "changed": []}
    assert api.get("tasks", {"queue": "work"}).json()["tasks"] == []


def test_one_token_cannot_act_as_another(make_api: Callable[..., Api]) -> None:
    first, second = (
        make_api("=read,claim,insert,change,delete"),
        make_api("=read,claim,insert,change,delete"),
    )
    insert(first, "held")
    task = first.post("claim", {"queues": ["held"], "duration": 60}).json()["task"]

    stolen = second.post("modify", {"deletes": [{"id": task["id"], "version": task["version"]}]})

    assert stolen.status_code == 409
    assert stolen.json()["claims"] == [{"id": task["id"], "version": task["version"]}]


def test_a_token_granted_every_queue_is_not_looked_up_before_the_store(api: Api) -> None:
    insert(api, "work")
    claimed = api.post("claim", {"queues": ["work"], "duration": 60}).json()["task"]
    deletion = {"deletes": [{"id": claimed["id"], "version": claimed["version"]}]}
    api.get("tasks", {"queue": "work"})  # the token is remembered: no lookup of it either

    with CaptureQueriesContext(connection) as queries:
        done = api.post("modify", deletion)

    assert done.status_code == 200
    assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]
    again = api.post("modify", deletion)
    assert again.status_code == 409, "the store itself answers what it cannot do"
    assert again.json()["deletes"] == deletion["deletes"]


def test_a_failed_modify_answers_409_with_every_problem(api: Api) -> None:
    existing, other = insert(api, "q"), insert(api, "q")
    missing = {"id": str(uuid.uuid4()), "version": 0}
    stale = {"id": other["id"], "version": 7}

    response = api.post(
        "modify",
        {
            "inserts": [{"queue": "q", "id": existing["id"]}],
            "depends": [missing],
            "deletes": [stale],
        },
    )

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "dependency"
    assert body["inserts"] == [{"id": existing["id"], "version": 0}]
    assert body["depends"] == [missing]
    assert body["deletes"] == [stale]
    assert (body["changes"], body["claims"]) == ([], [])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inserts": [{"queue": "ok"}, {"queue": ""}]},
            "inserts[1].queue: queue must not be empty",
        ),
        ({"inserts": [{"queue": "q", "value": "not base64!"}]}, "inserts[0].value: not valid"),
        ({"inserts": [{"queue": "q", "at": "yesterday"}]}, "inserts[0].at: not an RFC 3339"),
        ({"inserts": [{"queue": "q", "at": "2026-01-01T00:00:00"}]}, "needs a UTC offset"),
        ({"deletes": [{"id": "nope", "version": 0}]}, "deletes[0].id"),
        ({"deletes": [{"id": str(uuid.uuid4()), "version": -1}]}, "deletes[0].version"),
        ({"changes": [{"version": 0}]}, "missing field 'id'"),
        (
            {"changes": [{"id": str(uuid.uuid4()), "version": 0, "at": T, "arrival_in": 5}]},
            "changes[0]: give at or arrival_in, not both",
        ),
        ({"inserts": [{"queue": "q", "arrival_in": -1}]}, "inserts[0].arrival_in"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ({"inserts": [{"queue": "q", "colour": "red"}]}, "unknown field 'colour'"),
        ({"inserts": "all"}, "inserts: expected a list"),
        ([1, 2], "body: expected a JSON object"),
        ("{not json", "the body is not JSON"),
    ],
)
def test_bad_input_is_400_naming_the_field(api: Api, body: Any, message: str) -> None:
    response = api.post("modify", body)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert message in response.json()["message"]
    assert client().queues() == {}, "nothing of a bad modification is stored"


def test_deeply_nested_claims_are_400(api: Api) -> None:
    response = api.post("claim", '{"queues": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["message"]


def test_a_change_keeps_every_field_it_does_not_name(api: Api) -> None:
    task = insert(api, "jobs", b"v", attempt=4, err="it failed")
    claimed = api.post("claim", {"queues": ["jobs"], "duration": 60}).json()["task"]

    renewed = api.post(
        "modify",
        {"changes": [{"id": claimed["id"], "version": claimed["version"], "arrival_in": 60}]},
    )
    released = api.post(
        "modify",
        {"changes": [{"id": claimed["id"], "version": renewed.json()["changed"][0]["version"]}]},
    )

    [kept] = renewed.json()["changed"]
    assert (kept["queue"], kept["value"], kept["attempt"], kept["err"]) == (
        "jobs",
        None,  # kept, so not sent back: the client has it
        4,
        "it failed",
    )
    assert api.get("tasks", {"queue": "jobs"}).json()["tasks"][0]["value"] == task["value"]
    assert kept["claimant"] == claimed["claimant"], "a renewal keeps the claim"
    [free] = released.json()["changed"]
    assert (free["queue"], free["attempt"], free["err"], free["claimant"]) == (
        "jobs",
        4,
        "it failed",
        None,
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"queue": "q", "limit": "-1"}, "limit"),
        ({"queue": "q", "limit": "many"}, "limit: expected an integer"),
        ({"queue": "q", "state": "stuck"}, "state"),
        ({"queue": "q", "after": "2026-01-01T00:00:00Z"}, "after: expected <microseconds"),
        ({"queue": "q", "omit_values": "maybe"}, "omit_values"),
        ({"id": "x"}, "id[0]: not a UUID"),
    ],
)
def test_bad_listings_are_400(api: Api, params: dict[str, str], message: str) -> None:
    response = api.get("tasks", params)
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "queues: expected a list"),
        ({"queues": []}, "queues: expected a list"),
        ({"queues": ["q"], "duration": -1}, "duration"),
        ({"queues": ["q"], "wait": "soon"}, "wait"),
        ({"queues": ["q\x00"]}, "queues[0]"),
        ({"queues": ["q"], "claimant": str(uuid.uuid4())}, "unknown field 'claimant'"),
    ],
)
def test_bad_claims_are_400(api: Api, body: dict[str, Any], message: str) -> None:
    response = api.post("claim", body)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_a_missing_or_wrong_token_is_401(api: Api, superuser: User, settings: Any) -> None:
    for secret in (None, "eq_nothing_here", api.secret + "x", "Basic abc"):  # type: ignore[operator]
        response = Api(secret).get("time")
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="entroq"'
    token = tokens.authenticate(api.secret)  # type: ignore[arg-type]
    assert token is not None
    tokens.revoke(token)
    assert api.get("time").status_code == 401
    _, secret = tokens.create(superuser, "again", [tokens.Grant.parse("=read")])
    assert Api(secret).get("time").status_code == 200
    settings.ENTROQ = {"API_TOKEN_CACHE_SECONDS": 0}  # as if the cache time had passed
    superuser.is_active = False
    superuser.save()
    assert Api(secret).get("time").status_code == 401, "an inactive user's tokens stop"


def test_grants_limit_each_action_to_queue_prefixes(make_api: Callable[..., Api]) -> None:
    admin = make_api("=read,claim,insert,change,delete")
    billing = make_api("billing/=read,claim,insert,change,delete", "mail/=read")
    task = insert(admin, "mail/out")
    insert(admin, "billing/charge")

    def status(response: Any) -> int:
        return int(response.status_code)

    assert status(billing.post("claim", {"queues": ["billing/charge", "mail/out"]})) == 403
    assert status(billing.post("modify", {"inserts": [{"queue": "mail/out"}]})) == 403
    delete = {"deletes": [{"id": task["id"], "version": task["version"]}]}
    assert status(billing.post("modify", delete)) == 403
    move_out = {"changes": [{"id": task["id"], "version": 0, "queue": "billing/x"}]}
    assert status(billing.post("modify", move_out)) == 403, "a change needs its source queue"
    charge = billing.post("claim", {"queues": ["billing/charge"], "duration": 60}).json()["task"]
    move_away = {"changes": [{"id": charge["id"], "version": charge["version"], "queue": "x"}]}
    assert status(billing.post("modify", move_away)) == 403, "...and its destination"
    assert status(billing.get("tasks", {"queue": "x"})) == 403
    depend = {"depends": [{"id": task["id"], "version": 0}], "inserts": [{"queue": "billing/y"}]}
    assert status(billing.post("modify", depend)) == 200, "mail/ is readable"

    assert billing.get("queues").json()["queues"] == {
        "billing/charge": 1,
        "billing/y": 1,
        "mail/out": 1,
    }
    secret = insert(admin, "secret")
    found = billing.get("tasks", {"id": [secret["id"], task["id"]]}).json()["tasks"]
    assert [t["id"] for t in found] == [task["id"]], "lookups by ID show only readable tasks"
    assert "secret" not in billing.get("stats").json()["stats"]


def test_a_token_can_do_no_more_than_its_user(
    superuser: User, make_api: Callable[..., Api], settings: Any
) -> None:
    viewer = User.objects.create_user("viewer")
    viewer.groups.add(Group.objects.get(name="EntroQ viewers"))
    with pytest.raises(ValueError, match="may not read tasks"):
        tokens.create(viewer, "t", [tokens.Grant.parse("=read")])
    operator = User.objects.create_user("operator")
    operator.groups.add(*Group.objects.filter(name__in=["EntroQ viewers", "EntroQ operators"]))
    api = make_api("=claim,insert", user=operator)
    assert insert(api, "q")
    settings.ENTROQ = {"API_TOKEN_CACHE_SECONDS": 0}  # as if the cache time had passed
    operator.groups.clear()  # the role is taken away: so are the token's powers
    operator = User.objects.get(pk=operator.pk)
    assert api.post("modify", {"inserts": [{"queue": "q"}]}).status_code == 403


def test_oversized_bodies_are_413(api: Api, settings: Any) -> None:
    settings.ENTROQ = {"API_MAX_BODY_BYTES": 1000}
    response = api.post("modify", {"inserts": [{"queue": "q", "value": "A" * 2000}]})
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_values_over_the_store_limit_are_400(api: Api, settings: Any) -> None:
    settings.ENTROQ = {"MAX_VALUE_BYTES": 4}
    client.cache_clear()
    try:
        response = api.post(
            "modify", {"inserts": [{"queue": "q", "value": B64(b"12345").decode()}]}
        )
    finally:
        client.cache_clear()
    assert response.status_code == 400
    assert "limit of 4 bytes" in response.json()["message"]


def test_wrong_methods_and_paths(api: Api) -> None:
    assert api.get("claim").status_code == 405
    assert api.get("claim")["Allow"] == "POST"
    assert api.post("tasks", {}).status_code == 405
    missing = api.get("nothing/here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


# Against a live server: long polls and the client.


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_claim_is_woken_by_an_insert(live_server: LiveServer, api: Api) -> None:
    waiter = EntroQ(HTTPBackend(live_server.url, token=api.secret))  # type: ignore[arg-type]
    result: dict[str, Any] = {}

    def claim() -> None:
        started = time.monotonic()
        result["task"] = waiter.claim("wake", duration=30, timeout=20)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=claim)
    thread.start()
    time.sleep(1.0)
    EntroQ().modify(inserting_into("wake", value=b"now"))
    thread.join(25)

    assert result["task"].value == b"now"
    assert result["seconds"] < 5, "woken, not found by a later poll"


@pytest.mark.django_db(transaction=True)
def test_the_server_bounds_a_long_poll(live_server: LiveServer, api: Api, settings: Any) -> None:
    settings.ENTROQ = {"API_MAX_WAIT_SECONDS": 1}
    started = time.monotonic()
    response = api.post("claim", {"queues": ["empty"], "wait": 3600})
    assert response.json() == {"task": None}
    assert 0.9 < time.monotonic() - started < 5


def test_http_backend_reports_an_unreachable_server() -> None:
    from queues.entroq import BackendUnavailable

    backend = HTTPBackend("http://127.0.0.1:9", token="eq_x_y", retries=1, timeout=1)
    with pytest.raises(BackendUnavailable):
        backend.time()


def test_the_json_modify_body_round_trips(api: Api) -> None:
    body = json.dumps({"inserts": [{"queue": "q", "value": "", "at": None, "id": None}]})
    assert api.post("modify", body).status_code == 200


def test_times_keep_four_digit_years(api: Api) -> None:
    task = insert(api, "old", at="0023-02-08T20:13:36Z")
    assert task["at"] == "0023-02-08T20:13:36.000000Z"


def test_a_listing_of_no_queue_and_no_ids_is_empty(api: Api) -> None:
    insert(api, "q")
    assert api.get("tasks").json() == {"tasks": []}


# What a review found.


def test_a_body_without_a_length_is_refused_not_dropped(api: Api) -> None:
    from django.test import RequestFactory

    from queues import api as views

    request = RequestFactory().post(
        "/api/v1/modify",
        '{"inserts": [{"queue": "q"}]}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.secret}", "Transfer-Encoding": "chunked"},
    )
    del request.META["CONTENT_LENGTH"]
    response = views.modify(request)
    assert response.status_code == 411
    assert client().tasks("q") == []


def test_a_token_learns_nothing_of_queues_it_has_no_grant_for(
    make_api: Callable[..., Api],
) -> None:
    admin = make_api("=read,claim,insert,change,delete")
    payroll = insert(admin, "secret/payroll")
    outsider = make_api("jobs/=read,insert,delete")
    for version in (payroll["version"], payroll["version"] + 1):
        for field in ("depends", "deletes"):
            body = {field: [{"id": payroll["id"], "version": version}]}
            response = outsider.post("modify", body)
            assert response.status_code == 409, "answered as a missing task"
            assert "secret" not in response.content.decode()
    reader = make_api("secret/=read")
    refused = reader.post("modify", {"deletes": [{"id": payroll["id"], "version": 0}]})
    assert refused.status_code == 403, "a queue the token sees: the missing grant is named"
    # What it can learn, as the README says: that the ID is taken, not where.
    taken = outsider.post("modify", {"inserts": [{"queue": "jobs/x", "id": payroll["id"]}]})
    assert taken.status_code == 409
    assert taken.json()["inserts"] == [{"id": payroll["id"], "version": 0}]
    assert "secret" not in taken.content.decode()
    assert outsider.get("tasks", {"id": payroll["id"]}).json()["tasks"] == []


def test_a_stale_reference_is_409_with_every_problem_before_the_store(api: Api) -> None:
    held = insert(api, "s")
    task = insert(api, "s2")
    api.post("modify", {"deletes": [{"id": task["id"], "version": 0}]})  # now it is gone
    response = api.post(
        "modify",
        {
            "inserts": [{"queue": "s", "id": held["id"]}],
            "deletes": [{"id": task["id"], "version": 0}],
        },
    )
    body = response.json()
    assert response.status_code == 409
    assert body["deletes"] == [{"id": task["id"], "version": 0}]
    assert body["inserts"] == [{"id": held["id"], "version": 0}]


def test_the_limit_counts_readable_queues_only(make_api: Callable[..., Api]) -> None:
    admin = make_api("=read,claim,insert,change,delete")
    for queue in ("a/1", "a/2", "b/1"):
        insert(admin, queue)
    limited = make_api("b/=read")
    assert limited.get("queues", {"limit": "1"}).json() == {"queues": {"b/1": 1}}
    assert limited.get("stats").json()["stats"].keys() == {"b/1"}
    assert make_api("b/=claim").get("queues").json() == {"queues": {}}


@pytest.mark.django_db(transaction=True)
def test_http_backend_pages_long_listings(live_server: LiveServer, api: Api) -> None:
    eq = EntroQ(HTTPBackend(live_server.url, token=api.secret))  # type: ignore[arg-type]
    inserted, _ = eq.modify(*[inserting_into("many") for _ in range(250)])
    ordered = sorted(inserted, key=lambda t: (t.at, t.id.int))

    assert [t.id for t in eq.tasks("many")] == [t.id for t in ordered]
    assert [t.id for t in eq.tasks("many", newest_first=True, limit=120)] == [
        t.id for t in reversed(ordered)
    ][:120]
    wanted = [t.id for t in reversed(inserted)][:150]
    assert [t.id for t in eq.tasks(ids=wanted, omit_values=True)] == wanted
    assert eq.claim("many", timeout=0) is not None, "a claim with no time left still tries"


@pytest.mark.django_db(transaction=True)
def test_http_backend_says_a_wrong_url_is_wrong(live_server: LiveServer, api: Api) -> None:
    backend = HTTPBackend(live_server.url + "/not/here", token=api.secret)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="an EntroQ server's API"):
        backend.time()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the lock must wait for no test transaction
def test_a_request_whose_query_runs_out_of_time_is_503(api: Api, settings: Any) -> None:
    settings.ENTROQ = {**settings.ENTROQ, "API_STATEMENT_SECONDS": 0.2}
    insert(api, "billing/charge")
    with task_table_locked():  # as a query over a huge table would
        answers = [
            api.get("stats", {"prefix": "billing/"}),
            api.get("tasks", {"queue": "billing/charge"}),
            api.post("modify", {"inserts": [{"queue": "billing/charge"}]}),
            api.post("claim", {"queues": ["billing/charge"]}),
        ]

    for answer in answers:
        assert answer.status_code == 503, answer.content
        assert answer["Retry-After"] == "5"
        assert answer.json() == {
            "error": "timeout",
            "message": "a query took over 0.2 s and was stopped; try again later",
        }
    assert api.get("stats").json()["stats"]["billing/charge"]["size"] == 1, "nothing was added"
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0", "no later request or query inherits the timeout"


def test_a_renewal_answer_is_as_small_as_its_request(api: Api) -> None:
    large = B64(b"x" * 1_000_000).decode()
    insert(api, "big", b"x" * 1_000_000)
    claimed = api.post("claim", {"queues": ["big"], "duration": 60}).json()["task"]
    assert claimed["value"] == large

    renewed = api.post(
        "modify",
        {"changes": [{"id": claimed["id"], "version": claimed["version"], "arrival_in": 60}]},
    )
    moved = api.post(
        "modify",
        {
            "changes": [
                {
                    "id": claimed["id"],
                    "version": claimed["version"] + 1,
                    "value": B64(b"y").decode(),
                }
            ]
        },
    )

    assert len(renewed.content) < 1000
    assert renewed.json()["changed"][0]["value"] is None
    assert moved.json()["changed"][0]["value"] == B64(b"y").decode(), "a value sent comes back"


@pytest.mark.django_db(transaction=True)
def test_a_claim_takes_up_to_its_limit(api: Api) -> None:
    inserted, _ = EntroQ().modify(*(inserting_into("work") for _ in range(3)))

    answer = api.post("claim", {"queues": ["work"], "duration": 60, "limit": 5}).json()

    assert sorted(t["id"] for t in answer["tasks"]) == sorted(str(t.id) for t in inserted)
    assert answer["task"] == answer["tasks"][0]
    assert api.post("claim", {"queues": ["work"], "limit": 5}).json() == {"task": None, "tasks": []}
    for bad in (0, 101, 2.5, True, "3"):
        refused = api.post("claim", {"queues": ["work"], "limit": bad})
        assert refused.status_code == 400, bad
        assert "limit" in refused.json()["message"]


@pytest.mark.django_db(transaction=True)
def test_modify_each_answers_each_outcome_and_applies_the_rest(
    api: Api, make_api: Callable[..., Api]
) -> None:
    eq = EntroQ()
    eq.modify(*(inserting_into("work") for _ in range(2)))
    claimed = api.post("claim", {"queues": ["work"], "duration": 60, "limit": 2}).json()["tasks"]
    first, second = claimed
    body = {
        "modifications": [
            {"deletes": [{"id": first["id"], "version": first["version"]}]},
            {"deletes": [{"id": second["id"], "version": second["version"] - 1}]},
            {"inserts": [{"queue": "next", "value": "bWFkZQ=="}]},
            {"deletes": [{"id": str(uuid.uuid4()), "version": 0}]},
        ]
    }

    outcomes = api.post("modify/each", body).json()["outcomes"]

    assert outcomes[0] == {"inserted": [], "changed": []}
    assert outcomes[1]["error"] == "dependency"
    assert outcomes[1]["deletes"] == [{"id": second["id"], "version": second["version"] - 1}]
    assert outcomes[2]["inserted"][0]["queue"] == "next"
    assert outcomes[3]["error"] == "dependency"
    assert [str(t.id) for t in eq.tasks("work")] == [second["id"]]
    assert [t.value for t in eq.tasks("next")] == [b"made"]

    # A modification the token may not make refuses the whole request.
    reader = make_api("=read,claim")  # no insert
    refused = reader.post("modify/each", {"modifications": [{"inserts": [{"queue": "q"}]}]})
    assert refused.status_code == 403
    assert eq.tasks("q") == []


def test_api_operations_skip_the_pages_middleware(api: Api, client: Any) -> None:
    answered = api.get("time")
    page = client.get("/api/v1/openapi.json")  # not an operation: the whole chain

    assert answered.status_code == 200
    assert answered["X-Content-Type-Options"] == "nosniff", "SecurityMiddleware runs"
    assert "Content-Security-Policy" not in answered, "the pages' middleware does not"
    assert "Vary" not in answered, "no session or CSRF cookie is looked at"
    assert answered["Content-Length"] == str(len(answered.content))
    assert "Content-Security-Policy" in page
