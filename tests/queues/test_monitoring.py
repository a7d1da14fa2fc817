"""Health checks and Prometheus metrics, in-process and on a real gunicorn."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from queues.entroq import EntroQ, inserting_into
from scripts.webserver import serving
from tests.conftest import Api


def samples(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.django_db
def test_health_and_readiness_need_no_login(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "migrations": "ok"}


@pytest.mark.django_db
def test_metrics_count_api_calls_and_show_queue_sizes(
    client: Client, api: Api, settings: Settings
) -> None:
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0}
    eq = EntroQ()
    for _ in range(3):
        eq.modify(inserting_into("jobs"))
    api.post("claim", {"queues": ["jobs"], "duration": 60})
    api.post("claim", {"queues": ["empty"]})
    api.post("modify", {"inserts": [{"queue": ""}]})

    found = samples(client)

    assert found[("entroq_queue_tasks", (("queue", "jobs"), ("state", "available")))] == 2
    assert found[("entroq_queue_tasks", (("queue", "jobs"), ("state", "claimed")))] == 1
    assert found[("entroq_claims_total", (("outcome", "claimed"),))] >= 1
    assert found[("entroq_claims_total", (("outcome", "empty"),))] >= 1
    assert found[("entroq_modifications_total", (("outcome", "invalid"),))] >= 1
    assert found[("entroq_api_requests_total", (("operation", "modify"), ("status", "400")))] >= 1
    assert found[("entroq_api_request_seconds_count", (("operation", "claim"),))] >= 2
    assert found[("entroq_api_claimants", ())] >= 1


@pytest.mark.django_db
def test_queue_sizes_are_computed_once_per_period(client: Client, settings: Settings) -> None:
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0}
    samples(client)  # fresh now
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 60}
    EntroQ().modify(inserting_into("late"))
    with CaptureQueriesContext(connection) as queries:
        found = samples(client)
        samples(client)
    assert [q for q in queries if "entroq_task" in q["sql"]] == []
    assert ("entroq_queue_tasks", (("queue", "late"), ("state", "available"))) not in found


def fetch(url: str | urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readiness_fails_until_migrations_are_applied(tmp_path: Path) -> None:
    with serving(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", workers=1, threads=2) as base:
        assert fetch(base + "/healthz") == (200, {"status": "ok"})
        status, body = fetch(base + "/readyz")
    assert status == 503
    assert body["database"] == "ok"
    assert body["migrations"].endswith("not applied")


def test_readiness_fails_while_the_database_is_down() -> None:
    with serving("postgres://nobody@127.0.0.1:9/none", workers=1, threads=2) as base:
        assert fetch(base + "/healthz")[0] == 200
        status, body = fetch(base + "/readyz")
        request = urllib.request.Request(
            base + "/api/v1/time", headers={"Authorization": "Bearer eq_a_b"}
        )
        api_status, api_body = fetch(request)
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    assert status == 503
    assert body["database"] == "unreachable", "no host or user names to the world"
    assert api_status == 503, "the API says the store is away, not that it broke"
    assert "entroq_queue_stats_up 0.0" in metrics
    assert api_body["error"] == "unavailable"


@pytest.mark.django_db
def test_metrics_can_require_a_bearer_token(client: Client, settings: Settings) -> None:
    settings.ENTROQ = {"METRICS_BEARER_TOKEN": "s3cret"}
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
