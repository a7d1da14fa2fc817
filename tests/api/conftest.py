"""API fixtures: tokens with chosen grants, and a JSON client that sends them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from queues import tokens


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
    return make_api("=read,claim,insert,change,delete")
