"""Fixtures: the same scenarios run on every backend.

``make test`` runs the suite twice: on SQLite (``DATABASE_URL`` unset) and on a
throwaway PostgreSQL cluster. Tests marked ``postgres`` need PostgreSQL; under
``CI=true`` they fail rather than skip when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from playwright.sync_api import Browser, sync_playwright

from queues import entroq, metrics, snapshots, tokens

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(trylast=True)  # after -m has deselected what this run leaves out
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
            if IN_CI:
                raise pytest.UsageError(
                    f"{item.nodeid} needs PostgreSQL, and CI=true forbids skipping it: "
                    "run it with DATABASE_URL pointing at PostgreSQL (make test-postgres)"
                )
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL)"))
        if item.get_closest_marker("sqlite") and connection.vendor != "sqlite":
            item.add_marker(pytest.mark.skip(reason="needs SQLite"))


# The live server's long polls in tests: a poll its client gave up on (a stopped
# worker, a killed process) goes on in the server's thread, into the next test.
TEST_API_MAX_WAIT_SECONDS = 3


@pytest.fixture(autouse=True)
def _live_server_settles(request: pytest.FixtureRequest, settings: Any) -> Iterator[None]:
    """Bound the live server's long polls, and wait for them to end after a test."""
    settings.ENTROQ = {**settings.ENTROQ, "API_MAX_WAIT_SECONDS": TEST_API_MAX_WAIT_SECONDS}
    yield
    if "live_server" in request.fixturenames:
        deadline = time.monotonic() + TEST_API_MAX_WAIT_SECONDS + 5
        while api_claims_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)


def api_claims_waiting() -> float:
    return next(iter(metrics.WAITING.collect())).samples[0].value


@pytest.fixture(
    params=[
        "memory",
        # Transactional: claims and notifications must really commit, and other
        # threads and processes must see them.
        pytest.param("django", marks=pytest.mark.django_db(transaction=True)),
        # The HTTP API of a live server (a thread of this process) on that database.
        pytest.param("http", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[entroq.Backend]:
    """Yield each backend, empty; the Django one on the configured database."""
    if request.param == "memory":
        yield entroq.MemoryBackend()
        return
    if request.param == "http":
        backend: entroq.Backend = http_backend(request.getfixturevalue("live_server").url)
    else:
        backend = entroq.DjangoBackend()
    yield backend
    backend.close()


def http_backend(
    url: str, grants: str = "=read,claim,insert,change,delete,pause"
) -> entroq.Backend:
    """Return an ``HTTPBackend`` with a new token (its own claimant) of a new superuser."""
    user = User.objects.create_superuser(f"api-{uuid.uuid4().hex[:8]}", email="")
    _, secret = tokens.create(user, "test", [tokens.Grant.parse(g) for g in grants.split()])
    return entroq.HTTPBackend(url, token=secret)


@pytest.fixture
def eq(backend: entroq.Backend) -> entroq.EntroQ:
    return entroq.EntroQ(backend)


@pytest.fixture
def other(backend: entroq.Backend) -> entroq.EntroQ:
    """A second client on the same backend, with its own claimant ID."""
    if isinstance(backend, entroq.HTTPBackend):  # the claimant comes with the token
        return entroq.EntroQ(http_backend(backend.base_url))
    return entroq.EntroQ(backend)


@pytest.fixture(scope="session", autouse=True)
def _stop_listening(django_db_setup: None) -> Iterator[None]:
    """Close LISTEN connections before the test database is dropped (set up after it)."""
    yield
    snapshots.settle()  # no thread of ours may hold a connection to the dropped database
    entroq.DjangoBackend.stop_listening()


# The HTTP API through the test client.


class Api:
    """The test client, speaking JSON with a bearer token."""

    def __init__(self, secret: str | None) -> None:
        self.client = Client()
        self.secret = secret

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.client.get("/api/v1/" + path, params or {}, headers=self._headers())

    def post(self, path: str, body: Any) -> Any:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return self.client.post(
            "/api/v1/" + path, data, content_type="application/json", headers=self._headers()
        )


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root", email="")


@pytest.fixture
def make_api(superuser: User) -> Callable[..., Api]:
    """Return a factory: ``make_api("billing/=claim,delete", "=read")`` -> an Api."""

    def make(*grants: str, user: User = superuser) -> Api:
        _, secret = tokens.create(user, "test", [tokens.Grant.parse(g) for g in grants])
        return Api(secret)

    return make


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """A token that may do everything everywhere."""
    return make_api("=read,claim,insert,change,delete,pause")


# Chromium, for the pages' tests (tests/browser) and the installed app's: one browser a
# session, since Playwright's sync API allows one running instance a thread.


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        message = "Chromium is not installed (apt-get install chromium; make test does it)"
        if IN_CI:
            pytest.fail(message + ", and CI=true forbids skipping")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield launched
        launched.close()
