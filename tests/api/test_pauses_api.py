"""The API's pauses: POST /pause and /resume, GET /paused, with the pause grant."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from queues.entroq import EntroQ, inserting_into
from queues.models import AuditEntry
from tests.conftest import Api

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_token_pauses_and_resumes_and_lists_what_it_sees(
    make_api: Callable[..., Api],
) -> None:
    billing = make_api("billing/=read,claim,pause")
    everything = make_api("=read,pause")

    paused = billing.post("pause", {"queues": ["billing/*", "billing/cards"]})
    again = billing.post("pause", {"queues": ["billing/cards"]})
    everything.post("pause", {"queues": ["mail"]})

    assert paused.status_code == 200
    assert paused.json() == {"changed": ["billing/*", "billing/cards"], "unchanged": []}
    assert again.json() == {"changed": [], "unchanged": ["billing/cards"]}
    listed = billing.get("paused").json()["paused"]
    assert [p["queue"] for p in listed] == ["billing/*", "billing/cards"], "not mail"
    assert all(p["since"] for p in listed)
    resumed = billing.post("resume", {"queues": ["billing/*", "billing/other"]})
    assert resumed.json() == {"changed": ["billing/*"], "unchanged": ["billing/other"]}
    assert [str(p) for p in EntroQ().paused()] == ["billing/cards", "mail"]
    entry = AuditEntry.objects.filter(action="resume").get()
    assert entry.username == "root"
    assert "via the API, token test" in entry.detail


@pytest.mark.parametrize(
    ("grants", "queues"),
    [
        (["billing/=read,claim,change,delete"], ["billing/cards"]),  # no pause grant
        (["billing/=pause"], ["mail"]),  # another queue
        (["billing/=pause"], ["billing*"]),  # not a prefix pause: a queue outside
        (["billing/cards=pause"], ["billing/*"]),  # a wider prefix than granted
        (["billing/=pause"], ["*"]),  # every queue
    ],
)
def test_a_pause_beyond_the_token_s_grants_is_403(
    make_api: Callable[..., Api], grants: list[str], queues: list[str]
) -> None:
    response = make_api(*grants).post("pause", {"queues": queues})

    assert response.status_code == 403
    assert EntroQ().paused() == []
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"queues": "billing"},
        {"queues": []},
        {"queues": [1]},
        {"queues": ["ok"] * 101},
        {"queues": [""]},
        {"queues": ["a\x00b"]},
        {"queues": ["x" * 501]},
        {"queues": ["ok"], "also": 1},
    ],
)
def test_a_bad_pause_is_400_and_pauses_nothing(api: Api, body: object) -> None:
    response = api.post("pause", body)

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "bad_request"
    assert EntroQ().paused() == []


@pytest.mark.parametrize(
    ("grant", "queues", "status"),
    [
        ("*=read,claim", ["*"], 403),  # a grant on queues named "*...", not on all
        ("secret/*=read,claim", ["secret/*"], 403),
        ("secret/=read,claim", ["*"], 403),
        ("secret/=read,claim", ["secret/*"], 200),
        ("=read,claim", ["*"], 200),
    ],
)
def test_a_claim_over_a_prefix_needs_a_grant_on_all_of_it(
    make_api: Callable[..., Api], grant: str, queues: list[str], status: int
) -> None:
    EntroQ().modify(inserting_into("secret/payroll"))

    response = make_api(grant).post("claim", {"queues": queues})

    assert response.status_code == status
    if status == 200:
        assert response.json()["task"]["queue"] == "secret/payroll"


def test_a_token_sees_the_pauses_over_what_it_reads(make_api: Callable[..., Api]) -> None:
    make_api("=pause").post("pause", {"queues": ["*", "billing/*", "billing/inv/x", "mail"]})

    listed = make_api("billing/inv=read").get("paused").json()["paused"]

    assert [p["queue"] for p in listed] == ["*", "billing/*", "billing/inv/x"]


def test_a_claim_of_too_many_prefixes_is_400(api: Api) -> None:
    response = api.post("claim", {"queues": [f"q{i}/*" for i in range(11)]})

    assert response.status_code == 400
    assert "at most 10 prefixes" in response.json()["message"]
