"""API tokens: created and revoked in the dashboard and with ``manage.py eqtoken``."""

from __future__ import annotations

import re
from collections.abc import Callable
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client

from queues import tokens
from queues.models import ApiToken, AuditEntry
from tests.conftest import Api


@pytest.fixture
def operator(db: None) -> Client:
    user = User.objects.create_user("op")
    user.groups.add(*Group.objects.filter(name__in=["EntroQ viewers", "EntroQ operators"]))
    client = Client()
    client.force_login(user)
    return client


def test_the_dashboard_shows_a_new_secret_once_and_keeps_only_its_hash(operator: Client) -> None:
    response = operator.post(
        "/tokens", {"name": "billing workers", "grants": "billing/=claim,delete\n=read"}
    )
    page = response.content.decode()
    secret = re.search(r"(eq_[0-9a-f]{12}_[\w-]+)", page)
    assert secret
    token = ApiToken.objects.get()
    assert secret[1] not in str(token.__dict__), "only the hash is stored"
    assert tokens.authenticate(secret[1]) == token
    assert [str(g) for g in tokens.grants_of(token)] == ["billing/=claim,delete", "=read"]
    assert "no-store" in response["Cache-Control"]
    assert secret[1] not in operator.get("/tokens").content.decode(), "shown only once"
    assert AuditEntry.objects.get().action == "create token"


@pytest.mark.parametrize(
    ("grants", "message"),
    [
        ("", "needs at least one grant"),
        ("billing", "a grant reads PREFIX=ACTION"),
        ("billing/=fly", "unknown action"),
    ],
)
def test_bad_grants_are_refused(operator: Client, grants: str, message: str) -> None:
    response = operator.post("/tokens", {"name": "t", "grants": grants})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_user_revokes_only_their_own_tokens(operator: Client) -> None:
    mine = tokens.create(User.objects.get(username="op"), "mine", [tokens.Grant.parse("=read")])
    other_user = User.objects.create_superuser("root", email="")
    theirs = tokens.create(other_user, "theirs", [tokens.Grant.parse("=read")])

    assert operator.post(f"/tokens/{theirs[0].key_id}/revoke").status_code == 404
    assert operator.post(f"/tokens/{mine[0].key_id}/revoke").status_code == 303
    assert tokens.authenticate(mine[1]) is None
    assert tokens.authenticate(theirs[1]) is not None


@pytest.mark.django_db
def test_eqtoken_creates_lists_and_revokes() -> None:
    User.objects.create_superuser("alice", email="")
    out, err = StringIO(), StringIO()
    call_command(
        "eqtoken",
        "create",
        "--user",
        "alice",
        "--name",
        "w",
        "--grant",
        "jobs/=claim",
        stdout=out,
        stderr=err,
    )
    secret = out.getvalue().strip()
    token = tokens.authenticate(secret)
    assert token is not None
    assert "shown only now" in err.getvalue()

    listing = StringIO()
    call_command("eqtoken", "list", stdout=listing)
    assert f"{token.key_id}  alice  'w'  jobs/=claim  live" in listing.getvalue()
    assert secret not in listing.getvalue()

    call_command("eqtoken", "revoke", token.key_id, stdout=StringIO())
    assert tokens.authenticate(secret) is None
    with pytest.raises(CommandError, match="no user 'bob'"):
        call_command("eqtoken", "create", "--user", "bob", "--name", "x", "--grant", "=read")
    with pytest.raises(CommandError, match="unknown action"):
        call_command("eqtoken", "create", "--user", "alice", "--name", "x", "--grant", "=fly")


def test_a_grant_prefix_may_hold_an_equals_sign(make_api: Callable[..., Api]) -> None:
    grant = tokens.Grant.parse("team=a/=read,insert")
    api = make_api("team=a/=read,insert")
    inserted = api.post("modify", {"inserts": [{"queue": "team=a/jobs"}]})
    elsewhere = api.post("modify", {"inserts": [{"queue": "team=b/jobs"}]})

    assert (grant.prefix, grant.actions) == ("team=a/", frozenset({"read", "insert"}))
    assert str(grant) == "team=a/=read,insert"
    assert inserted.status_code == 200
    assert elsewhere.status_code == 403
