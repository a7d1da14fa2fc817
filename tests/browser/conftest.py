"""A real Chromium (Debian's package, driven by Playwright) against a live server.

``make test`` installs Chromium where it is missing; under ``CI=true`` a missing
browser fails the run instead of skipping these tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page

from tests.helpers import ROOT

# Playwright's sync API runs an event loop in this thread; the tests still call the
# ORM here between browser steps, which is safe because nothing else uses the loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "a long test password"


@pytest.fixture(params=["light", "dark"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


@pytest.fixture
def operator(transactional_db: None) -> User:
    return User.objects.create_superuser("ops", password=PASSWORD, email="")


def log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(base_url + "/")
    page.get_by_label("User name").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=False)
    return path
