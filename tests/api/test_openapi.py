"""The OpenAPI document matches the live server: a property-based run (schemathesis)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer
from schemathesis.core.result import Ok

from queues import tokens


@pytest.fixture
def secret(transactional_db: None) -> str:
    user = User.objects.create_superuser("openapi", email="")
    grants = [tokens.Grant.parse("=read,claim,insert,change,delete,pause")]
    return tokens.create(user, "openapi", grants)[1]


def live_server_document(live_server: LiveServer) -> dict[str, Any]:
    with urllib.request.urlopen(live_server.url + "/api/v1/openapi.json") as answer:
        document: dict[str, Any] = json.load(answer)
    return document


def test_the_server_does_what_its_document_says(
    live_server: LiveServer, secret: str, settings: Settings
) -> None:
    """Generate requests for every operation from the document; each answer must have a
    documented status, content type and schema, and no request may cause a 5xx."""
    settings.ENTROQ = {"API_MAX_WAIT_SECONDS": 0.1}  # claims that find nothing end soon
    schema = schemathesis.openapi.from_url(live_server.url + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {secret}"}
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    documented = live_server_document(live_server)["paths"]
    assert len(operations) == sum(len(methods) for methods in documented.values())

    for operation in operations:

        @given(case=operation.as_strategy())
        @examples(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=headers)

        conforms()


def test_the_document_is_served_without_a_token(client: object) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {
        "/claim",
        "/modify",
        "/modify/each",
        "/tasks",
        "/queues",
        "/stats",
        "/time",
        "/whoami",
        "/workers",
        "/workers/beat",
        "/workers/stop",
        "/pause",
        "/resume",
        "/paused",
        "/undoable",
        "/undo",
    }
