"""Health checks and Prometheus metrics, in-process and on a real gunicorn."""

from __future__ import annotations

import http.client
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

SCRAPER = {"Authorization": "Bearer scrape-me"}


def samples(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics", headers=SCRAPER).content.decode()
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
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0, "METRICS_BEARER_TOKEN": "scrape-me"}
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
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0, "METRICS_BEARER_TOKEN": "scrape-me"}
    samples(client)  # fresh now
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 60, "METRICS_BEARER_TOKEN": "scrape-me"}
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
    database = "postgres://nobody@127.0.0.1:9/none"
    with serving(database, workers=1, threads=2, ENTROQ_METRICS_TOKEN="scrape-me") as base:
        assert fetch(base + "/healthz")[0] == 200
        status, body = fetch(base + "/readyz")
        request = urllib.request.Request(
            base + "/api/v1/time", headers={"Authorization": "Bearer eq_a_b"}
        )
        api_status, api_body = fetch(request)
        scrape = urllib.request.Request(base + "/metrics", headers=SCRAPER)
        metrics = urllib.request.urlopen(scrape, timeout=10).read().decode()
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


@pytest.mark.django_db
def test_metrics_refuse_anonymous_scrapes_with_debugging_off(
    client: Client, settings: Settings
) -> None:
    settings.DEBUG = False
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0}
    EntroQ().modify(inserting_into("payroll/secret-run"))
    response = client.get("/metrics")
    assert response.status_code == 403
    text = response.content.decode()
    assert "ENTROQ_METRICS_TOKEN" in text, "it says what to configure"
    assert "ENTROQ_METRICS_ALLOW_ANONYMOUS" in text
    assert "payroll" not in text
    assert not response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_a_refused_scrape_names_no_queue_and_says_what_to_send(
    client: Client, settings: Settings
) -> None:
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0, "METRICS_BEARER_TOKEN": "scrape-me"}
    EntroQ().modify(inserting_into("payroll/secret-run"))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "scrape-me"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "Authorization: Bearer" in response.content.decode()
        assert "payroll" not in response.content.decode()


@pytest.mark.django_db
def test_metrics_can_be_opened_on_purpose(client: Client, settings: Settings) -> None:
    settings.DEBUG = False
    settings.ENTROQ = {"METRICS_CACHE_SECONDS": 0, "METRICS_ALLOW_ANONYMOUS": True}
    EntroQ().modify(inserting_into("payroll/secret-run"))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b'queue="payroll/secret-run"' in response.content


@pytest.mark.django_db
def test_a_token_is_needed_even_where_metrics_are_open(client: Client, settings: Settings) -> None:
    """A token, once set, is what a scrape needs: opening metrics does not undo it."""
    settings.ENTROQ = {"METRICS_BEARER_TOKEN": "scrape-me", "METRICS_ALLOW_ANONYMOUS": True}
    assert client.get("/metrics").status_code == 401


@pytest.mark.django_db
def test_metrics_are_open_while_debugging(client: Client, settings: Settings) -> None:
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


def test_metrics_are_never_exempt_from_https(tmp_path: Path) -> None:
    """Behind the TLS proxy that DJANGO_HTTPS=1 assumes, a scrape over plain HTTP is
    sent to HTTPS before its token is looked at; health checks stay plain."""
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    token = {"ENTROQ_METRICS_TOKEN": "scrape-me", "DJANGO_HTTPS": "1"}
    with serving(database, workers=1, threads=2, **token) as base:
        port = int(base.rsplit(":", 1)[1])

        def get(path: str, **headers: str) -> http.client.HTTPResponse:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            return response

        plain = get("/metrics", Authorization="Bearer scrape-me")
        behind_tls = get("/metrics", **{"X-Forwarded-Proto": "https"})
        scraped = get(
            "/metrics", Authorization="Bearer scrape-me", **{"X-Forwarded-Proto": "https"}
        )
        health = get("/healthz")
    assert plain.status == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{port}/metrics"
    assert behind_tls.status == 401
    assert scraped.status == 200
    assert health.status == 200
