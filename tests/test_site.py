"""The site itself: the login, the admin, and the client API without Django."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core import checks
from django.test import Client
from pytest_django.fixtures import Settings

from tests.helpers import ROOT


def test_the_client_api_imports_without_django_configured() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys\n"
        "from queues import entroq\n"
        "eq = entroq.EntroQ(entroq.MemoryBackend())\n"
        "eq.modify(entroq.inserting_into('q', value=b'v'))\n"
        "assert eq.try_claim('q').value == b'v'\n"
        "assert 'django.db' not in sys.modules, 'Django is loaded only for DjangoBackend'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_the_home_page_asks_for_a_login_and_says_how_to_get_one(client: Client) -> None:
    response = client.get("/", follow=True)
    assert response.redirect_chain == [("/accounts/login/?next=/", 302)]
    assert b"createsuperuser" in response.content


@pytest.mark.django_db
def test_the_admin_asks_for_a_login(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_an_unknown_entroq_setting_is_named(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MAX_QUEUES": 10, "DASHBOARD_PAGE_SIZE": 20}
    warnings = checks.run_checks(tags=["entroq"])
    named = [w for w in warnings if w.id == "queues.W001"]
    assert [w.msg for w in named] == [
        "settings.ENTROQ['DASHBOARD_MAX_QUEUES'] is not a setting of this version and is ignored."
    ]
