"""Dashboard fixtures: a client per role, and the client API the views use."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from queues.entroq import EntroQ
from queues.service import client


def _member(username: str, *groups: str) -> User:
    user = User.objects.create_user(username)  # force_login needs no password
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def _logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(db: None) -> Client:
    return _logged_in(_member("viewer", "EntroQ viewers"))


@pytest.fixture
def operator(db: None) -> Client:
    return _logged_in(_member("operator", "EntroQ viewers", "EntroQ operators"))


@pytest.fixture
def supervisor(db: None) -> Client:
    groups = ("EntroQ viewers", "EntroQ operators", "EntroQ supervisors")
    return _logged_in(_member("supervisor", *groups))


@pytest.fixture
def nobody(db: None) -> Client:
    """Logged in, with no role."""
    return _logged_in(_member("nobody"))


@pytest.fixture
def dash(db: None) -> EntroQ:
    """The dashboard's own client (its claimant ID is the dashboard's)."""
    return client()


@pytest.fixture
def worker(db: None) -> EntroQ:
    """Another claimant on the same database: a worker that holds tasks."""
    return EntroQ()
