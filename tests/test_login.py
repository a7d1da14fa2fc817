"""Logging in: failures are throttled per account and per address, and a session ends
after a while without activity."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from axes.models import AccessAttempt  # type: ignore[import-untyped, unused-ignore]
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings

from queues.middleware import LAST_ACTIVITY_KEY
from tests.helpers import ROOT

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

PASSWORD = "a long test password"
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _fast_hashing(settings: Settings) -> None:
    """Check passwords quickly: these tests check hundreds."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def viewer(username: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    user.groups.add(Group.objects.get(name="EntroQ viewers"))
    return user


@pytest.fixture
def alice(db: None) -> User:
    return viewer("alice")


@pytest.fixture
def bob(db: None) -> User:
    return viewer("bob")


def log_in(
    client: Client,
    username: str,
    password: str,
    *,
    address: str = "10.0.0.1",
    path: str = LOGIN,
    forwarded_for: str | None = None,
) -> Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        path,
        {"username": username, "password": password, "next": "/"},
        headers=headers,
        REMOTE_ADDR=address,
    )


def logged_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def limit() -> int:
    return int(django_settings.AXES_FAILURE_LIMIT)


# Throttling.


def test_thirty_wrong_passwords_then_the_right_one_do_not_log_in(alice: User) -> None:
    client = Client()
    for _ in range(30):
        assert log_in(client, "alice", "wrong").status_code in (200, 429)
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    text = response.content.decode()
    assert "Too many failed logins" in text
    assert "15 minutes" in text, "it says for how long"
    assert response["Retry-After"] == "900"


def test_failures_below_the_limit_do_not_stand_in_the_way(alice: User) -> None:
    client = Client()
    for _ in range(limit() - 1):
        assert log_in(client, "alice", "wrong").status_code == 200
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert logged_in(client)


def test_an_account_is_locked_from_every_address(alice: User, bob: User) -> None:
    for i in range(limit()):
        log_in(Client(), "alice", "wrong", address=f"10.0.1.{i}")
    client = Client()
    assert log_in(client, "alice", PASSWORD, address="10.0.2.1").status_code == 429
    assert not logged_in(client)
    assert log_in(client, "bob", PASSWORD, address="10.0.2.1").status_code == 302, (
        "that address may log in to other accounts"
    )


def test_an_address_is_locked_for_every_account(bob: User) -> None:
    for i in range(limit()):
        log_in(Client(), f"guess{i}", "wrong", address="10.0.0.9")
    client = Client()
    assert log_in(client, "bob", PASSWORD, address="10.0.0.9").status_code == 429
    assert not logged_in(client)
    assert log_in(client, "bob", PASSWORD, address="10.0.0.10").status_code == 302


def without_tokens(response: Response) -> str:
    """Return the page without what differs between any two renderings of it."""
    return re.sub(
        r'(name="csrfmiddlewaretoken" value="|"X-CSRFToken": "|nonce=")[^"]*',
        r"\1",
        response.content.decode(),
    )


def test_a_locked_out_login_looks_the_same_whether_the_account_exists(alice: User) -> None:
    for _ in range(limit()):
        log_in(Client(), "alice", "wrong", address="10.0.3.1")
        log_in(Client(), "nobody-by-this-name", "wrong", address="10.0.3.2")
    existing = log_in(Client(), "alice", PASSWORD, address="10.0.3.1")
    missing = log_in(Client(), "nobody-by-this-name", PASSWORD, address="10.0.3.2")
    assert existing.status_code == missing.status_code == 429
    assert existing["Retry-After"] == missing["Retry-After"]
    assert without_tokens(existing) == without_tokens(missing)
    assert "alice" not in without_tokens(existing)


def test_the_admin_login_is_throttled_too(db: None) -> None:
    User.objects.create_superuser("root", password=PASSWORD, email="")
    for _ in range(limit() - 1):
        assert log_in(Client(), "root", "wrong", path="/admin/login/").status_code == 200
    log_in(Client(), "root", "wrong")  # one count for both logins
    client = Client()
    response = log_in(client, "root", PASSWORD, path="/admin/login/")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert not logged_in(client)
    assert log_in(client, "root", PASSWORD).status_code == 429


def test_a_lockout_ends_after_the_cool_off(alice: User) -> None:
    for _ in range(limit()):
        log_in(Client(), "alice", "wrong")
    client = Client()
    assert log_in(client, "alice", PASSWORD).status_code == 429
    cool_off = django_settings.AXES_COOLOFF_TIME
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cool_off - timedelta(seconds=1))
    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_login_during_the_lockout_does_not_prolong_it(alice: User) -> None:
    for _ in range(limit()):
        log_in(Client(), "alice", "wrong")
    before = list(AccessAttempt.objects.values_list("attempt_time", "failures_since_start"))
    for _ in range(5):
        assert log_in(Client(), "alice", "wrong").status_code == 429
    after = list(AccessAttempt.objects.values_list("attempt_time", "failures_since_start"))
    assert after == before


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(bob: User) -> None:
    """Behind the TLS proxy every client comes from its address; a client that writes
    X-Forwarded-For must not get a fresh address with each guess."""
    for i in range(limit()):
        log_in(Client(), f"guess{i}", "wrong", forwarded_for=f"203.0.113.{i}")
    response = log_in(Client(), "bob", PASSWORD, forwarded_for="203.0.113.200")
    assert response.status_code == 429


def test_a_trusted_proxy_names_the_client(bob: User, settings: Settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    for i in range(limit()):
        # What a client writes before the proxy's own entry changes nothing.
        log_in(Client(), f"guess{i}", "wrong", forwarded_for=f"198.51.100.{i}, 203.0.113.7")
    locked = log_in(Client(), "bob", PASSWORD, forwarded_for="198.51.100.99, 203.0.113.7")
    assert locked.status_code == 429
    other = Client()
    assert log_in(other, "bob", PASSWORD, forwarded_for="203.0.113.8").status_code == 302
    assert AccessAttempt.objects.get(username="guess0").ip_address == "203.0.113.7"


def test_lockouts_are_shown_in_the_admin(alice: User) -> None:
    for _ in range(limit()):
        log_in(Client(), "alice", "wrong", address="10.0.4.4")
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", email=""))
    page = admin.get("/admin/axes/accessattempt/")
    assert page.status_code == 200
    assert "alice" in page.content.decode()
    assert "10.0.4.4" in page.content.decode()


def test_force_login_still_logs_in(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get("/").status_code == 200


def test_the_throttle_and_the_idle_time_come_from_the_environment() -> None:
    code = (
        "from django.conf import settings as s\n"
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), "
        "s.TRUSTED_PROXY_COUNT, s.SESSION_COOKIE_AGE)"
    )
    ours = ("DJANGO_", "ENTROQ_", "DATABASE_URL")
    bare = {k: v for k, v in os.environ.items() if not k.startswith(ours)}

    def shell(**extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
            env={**bare, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert shell() == "10 900.0 0 43200"
    assert (
        shell(
            DJANGO_LOGIN_FAILURE_LIMIT="3",
            DJANGO_LOGIN_COOLOFF_MINUTES="2",
            DJANGO_TRUSTED_PROXY_COUNT="1",
            DJANGO_SESSION_IDLE_SECONDS="600",
        )
        == "3 120.0 1 600"
    )


# The idle timeout.

REFRESH = {"HX-Request": "true", "HX-Trigger": "queues", "HX-Target": "queues"}


def operator(user: User) -> Client:
    client = Client()
    client.force_login(user)
    client.get("/")  # the session's first activity
    return client


def idle_for(client: Client, seconds: float) -> None:
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - seconds
    session.save()


def last_activity(client: Client) -> float:
    return float(client.session[LAST_ACTIVITY_KEY])


def session_writes(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if "django_session" in q["sql"] and not q["sql"].lstrip().upper().startswith("SELECT")
    ]


def test_a_session_ends_after_the_idle_time(alice: User) -> None:
    client = operator(alice)
    idle_for(client, django_settings.SESSION_COOKIE_AGE + 1)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"
    assert not logged_in(client)


def test_a_session_lives_on_with_activity(alice: User) -> None:
    client = operator(alice)
    idle_for(client, django_settings.SESSION_COOKIE_AGE - 5)
    assert client.get("/claims").status_code == 200
    assert last_activity(client) > time.time() - 5
    idle_for(client, 120)
    assert client.get("/").status_code == 200


def test_the_idle_time_is_a_setting(alice: User, settings: Settings) -> None:
    settings.SESSION_COOKIE_AGE = 600
    client = operator(alice)
    idle_for(client, 601)
    assert client.get("/").status_code == 302


def test_a_live_refresh_is_not_activity(alice: User) -> None:
    """A page left open on a screen would otherwise keep its session for ever."""
    client = operator(alice)
    idle_for(client, django_settings.SESSION_COOKIE_AGE - 30)
    before = last_activity(client)
    assert client.get("/", headers=REFRESH).status_code == 200
    assert last_activity(client) == before
    idle_for(client, django_settings.SESSION_COOKIE_AGE + 1)
    response = client.get("/", headers=REFRESH)
    assert response["HX-Redirect"] == "/accounts/login/?next=/"
    assert not logged_in(client)


def test_a_filter_or_page_change_through_htmx_is_activity(alice: User) -> None:
    client = operator(alice)
    idle_for(client, 3600)
    headers = {"HX-Request": "true", "HX-Target": "queues"}  # a form or link, no id
    assert client.get("/?prefix=a", headers=headers).status_code == 200
    assert last_activity(client) > time.time() - 5


def test_activity_writes_the_session_at_most_once_a_minute(alice: User) -> None:
    client = operator(alice)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get("/").status_code == 200
    assert session_writes(queries) == []
    idle_for(client, 61)
    with CaptureQueriesContext(connection) as queries:
        client.get("/")
        client.get("/")
    assert len(session_writes(queries)) == 1


def test_the_session_expires_with_the_idle_time(alice: User) -> None:
    """The database forgets a session, and the browser its cookie, once it timed out."""
    response = log_in(Client(), "alice", PASSWORD)
    assert response.status_code == 302
    assert response.cookies["sessionid"]["max-age"] == django_settings.SESSION_COOKIE_AGE == 43200
