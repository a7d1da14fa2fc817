"""End to end: an operator pauses a queue from its page, sees it on the overview, resumes it."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from queues.entroq import EntroQ, inserting_into
from tests.browser.conftest import log_in, screenshot
from tests.helpers import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def test_pause_a_queue_and_resume_it(page: Page, live_server: LiveServer, operator: User) -> None:
    eq = EntroQ()
    eq.modify(inserting_into("mail/outbox", value=b"{}"))
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/queue/mail/outbox")

    page.get_by_role("button", name="Pause claims").click()

    expect(page.get_by_text("Paused mail/outbox: workers claim nothing")).to_be_visible()
    expect(page.get_by_role("button", name="Resume mail/outbox")).to_be_visible()
    assert eq.try_claim("mail/outbox") is None
    page.goto(live_server.url + "/")
    page.get_by_label("Pause claims from").fill("mail/*")
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_text("Paused mail/*")).to_be_visible()
    shot = screenshot(page, "pauses-light")
    shutil.copy(shot, ROOT / "docs" / "screenshots" / "pauses-light.png")

    page.goto(live_server.url + "/queue/mail/outbox")
    expect(page.get_by_text("paused with mail/*")).to_be_visible()
    page.get_by_role("button", name="Resume mail/*").click()
    page.get_by_role("button", name="Resume mail/outbox").click()
    expect(page.get_by_role("button", name="Pause claims")).to_be_visible()
    assert eq.try_claim("mail/outbox") is not None
