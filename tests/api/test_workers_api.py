"""Live workers over the HTTP API: beats from workers with a token, listing, stopping."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from queues import liveness, tokens
from queues.entroq import EntroQ, inserting_into
from queues.models import AuditEntry, WorkerProcess
from tests.conftest import Api
from tests.helpers import start_manage

pytestmark = pytest.mark.django_db


def beat(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "host": "box-1",
        "pid": 4242,
        "version": "0.1.0",
        "handler": "app.work",
        "queues": ["billing/invoices"],
        "concurrency": 2,
        "prefetch": 0,
        "beat_seconds": 5,
        "done": 0,
        "failed": 0,
        "holding": 0,
        "held": [],
    }
    return {**body, **changes}


def test_a_beat_announces_the_worker_then_updates_it(api: Api) -> None:
    first = beat()
    answer = api.post("workers/beat", first)
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"stop": False}
    held = str(uuid.uuid4())
    assert api.post("workers/beat", {**first, "done": 5, "holding": 1, "held": [held]}).json() == {
        "stop": False
    }

    row = WorkerProcess.objects.get()
    assert (row.kind, row.host, row.pid, row.done, row.held) == ("http", "box-1", 4242, 5, [held])
    [listed] = api.get("workers").json()["workers"]
    assert (listed["id"], listed["state"], listed["holding"]) == (first["id"], "alive", 1)


def test_an_operator_stops_a_worker_and_its_next_beat_hears_it(api: Api) -> None:
    first = beat()
    api.post("workers/beat", first)

    answer = api.post("workers/stop", {"id": first["id"]})

    assert answer.status_code == 200, answer.content
    assert answer.json()["worker"]["state"] == "stopping"
    assert api.post("workers/beat", first).json() == {"stop": True}
    api.post("workers/beat", {**first, "exited": True})
    assert api.get("workers").json()["workers"][0]["state"] == "exited"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.outcome) == (liveness.STOP_WORKER, "root", "done")


def test_a_beat_needs_a_claim_grant_on_every_queue(make_api: Callable[..., Api]) -> None:
    billing = make_api("billing/=claim,read")
    assert billing.post("workers/beat", beat()).status_code == 200
    refused = billing.post("workers/beat", beat(queues=["billing/x", "payroll"]))
    assert refused.status_code == 403
    assert "payroll" in refused.json()["message"]
    reader = make_api("=read")
    assert reader.post("workers/beat", beat()).status_code == 403
    assert Api(None).post("workers/beat", beat()).status_code == 401


def test_only_the_token_that_announced_a_worker_beats_for_it(
    make_api: Callable[..., Api],
) -> None:
    mine, theirs = make_api("=claim,read"), make_api("=claim,read")
    first = beat()
    mine.post("workers/beat", first)
    answer = theirs.post("workers/beat", {**first, "done": 10**6})
    assert answer.status_code == 403
    assert WorkerProcess.objects.get().done == 0

    on_the_database = liveness.Announcement.of_this_process("database", ["billing/invoices"])
    liveness.announce(on_the_database)
    answer = mine.post("workers/beat", beat(id=str(on_the_database.id)))
    assert answer.status_code == 403


def test_listing_and_stopping_show_only_workers_of_queues_the_token_may_see(
    api: Api, make_api: Callable[..., Api]
) -> None:
    first = beat(queues=["payroll"])
    api.post("workers/beat", first)
    billing = make_api("billing/=claim,read")
    assert billing.get("workers").json() == {"workers": []}
    assert billing.post("workers/stop", {"id": first["id"]}).status_code == 404
    assert WorkerProcess.objects.get().stop_requested is None
    reader = make_api("payroll=read")
    assert len(reader.get("workers").json()["workers"]) == 1
    assert reader.post("workers/stop", {"id": first["id"]}).status_code == 403, "claim needed"
    assert api.get("workers", {"queue": "billing/invoices"}).json() == {"workers": []}


@pytest.mark.parametrize(
    "body",
    [
        beat(unknown=1),
        beat(id="not-a-uuid"),
        beat(id=None),
        beat(queues=[]),
        beat(queues="billing/invoices"),
        beat(queues=["billing/x"] * (liveness.MAX_QUEUES + 1)),
        beat(queues=[""]),
        beat(queues=[7]),
        beat(held=[str(uuid.uuid4())] * (liveness.MAX_HELD_IDS + 1)),
        beat(held=["nope"]),
        beat(held="x"),
        beat(done=-1),
        beat(done=2**64),
        beat(done=1.5),
        beat(pid="42"),
        beat(host="h" * 300),
        beat(host=None),
        beat(version=""),
        beat(concurrency=0),
        beat(beat_seconds=0.01),
        beat(beat_seconds="5"),
        beat(exited="yes"),
        [1, 2],
        "not json",
    ],
)
def test_bad_beats_are_a_clear_400(api: Api, body: Any) -> None:
    answer = api.post("workers/beat", body)
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == "bad_request"
    assert not WorkerProcess.objects.exists()


def test_bad_stops_and_listings_are_a_clear_4xx(api: Api) -> None:
    assert api.post("workers/stop", {"id": "x"}).status_code == 400
    assert api.post("workers/stop", {"id": str(uuid.uuid4()), "more": 1}).status_code == 400
    assert api.post("workers/stop", {"id": str(uuid.uuid4())}).status_code == 404
    assert api.get("workers", {"queue": "a\x00b"}).status_code == 400
    assert api.get("workers/beat").status_code == 405
    assert api.post("workers", {}).status_code == 405


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_eqworker_over_http_beats_through_the_api_and_stops_when_asked(
    live_server: LiveServer,
) -> None:
    user = User.objects.create_superuser("worker", email="")
    grants = [tokens.Grant.parse("remote=claim,delete,read")]
    token, secret = tokens.create(user, "remote", grants)
    EntroQ().modify(inserting_into("remote"))
    process = start_manage(
        "eqworker",
        "--url",
        live_server.url,
        "--handler",
        "tests.handlers.slow",
        "--queue",
        "remote",
        "--beat",
        "1",
        DATABASE_URL="postgres://nobody:wrong@127.0.0.1:9/none",
        ENTROQ_TOKEN=secret,
        EQ_TEST_LOG=os.devnull,
        EQ_TEST_SLEEP="3",
    )
    try:
        deadline = time.monotonic() + 30
        while not WorkerProcess.objects.filter(holding=1).exists():
            assert time.monotonic() < deadline, "the worker never beat while holding its task"
            time.sleep(0.1)
        row = WorkerProcess.objects.get()
        assert (row.kind, row.pid, row.token_id) == ("http", process.pid, token.pk)

        liveness.request_stop(row, EntroQ().time(), by="test")
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, err
    row.refresh_from_db()
    assert (row.done, row.holding) == (1, 0)
    assert row.exited is not None
    assert EntroQ().tasks("remote") == []
