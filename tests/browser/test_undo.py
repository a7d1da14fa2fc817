"""End to end: an operator in Chromium deletes a task, then undoes it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from queues.entroq import EntroQ, inserting_into
from tests.browser.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_delete_a_task_then_undo_it_from_the_message_and_see_it_in_the_audit_log(
    page: Page, live_server: LiveServer, operator: User
) -> None:
    eq = EntroQ()
    [task], _ = eq.modify(inserting_into("trash", value=b'{"order": 42}', attempt=2))
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/tasks/{task.id}")

    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_text("You can undo this for 24 hours")).to_be_visible()
    page.get_by_role("button", name="Delete 1 task").click()
    page.wait_for_url(live_server.url + "/queue/trash")
    message = page.locator(".message", has_text="Deleted 1 task.")
    expect(message).to_be_visible()
    assert eq.tasks("trash") == []
    screenshot(page, "undo-light")

    message.get_by_role("button", name="Undo").click()

    expect(page.get_by_text("Put back 1 task.")).to_be_visible()
    [back] = eq.tasks("trash")
    assert (back.id, back.value, back.attempt) == (task.id, b'{"order": 42}', 2)
    expect(page.get_by_role("link", name=task.id.hex[:8])).to_be_visible()
    page.goto(live_server.url + "/audit")
    expect(page.get_by_text("Kept for undo: 0 deleted tasks")).to_be_visible()
    expect(page.get_by_role("cell", name="undo", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Undo")).to_have_count(0)
