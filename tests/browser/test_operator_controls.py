"""End to end, the issue's walk: an operator pauses a queue a real worker consumes (by
prefix), watches the worker on /workers, resumes the queue, deletes a task and undoes it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from queues.entroq import EntroQ, inserting_into
from tests.browser.conftest import log_in
from tests.helpers import start_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_pause_watch_a_worker_resume_delete_and_undo(
    page: Page, live_server: LiveServer, operator: User, tmp_path: Path
) -> None:
    eq = EntroQ()
    eq.modify(*(inserting_into("mail/out") for _ in range(3)))
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/queue/mail/out")
    page.get_by_role("button", name="Pause claims").click()
    expect(page.get_by_role("button", name="Resume mail/out")).to_be_visible()

    worker = start_manage(
        *("eqworker", "--queue", "mail/*", "--handler", "tests.handlers.finish"),
        *("--beat", "1"),
        EQ_TEST_LOG=str(tmp_path / "log"),
    )
    try:
        page.goto(live_server.url + "/workers?refresh=2")
        row = page.locator("tr", has_text=f":{worker.pid}")
        expect(row).to_be_visible(timeout=20_000)
        expect(row.get_by_text("alive")).to_be_visible()
        expect(row).to_contain_text("mail/*")
        time.sleep(2)  # a live worker, a paused queue: nothing is claimed
        assert len(eq.tasks("mail/out")) == 3

        page.goto(live_server.url + "/queue/mail/out")
        page.get_by_role("button", name="Resume mail/out").click()
        expect(page.get_by_text("Resumed mail/out")).to_be_visible()
        deadline = time.monotonic() + 20
        while eq.tasks("mail/out") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert eq.tasks("mail/out") == [], "resumed: the waiting worker took them"
    finally:
        worker.terminate()
        worker.wait(30)

    [task], _ = eq.modify(inserting_into("trash", value=b'{"n": 7}'))
    page.goto(f"{live_server.url}/tasks/{task.id}")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Delete 1 task").click()
    message = page.locator(".message", has_text="Deleted 1 task.")
    expect(message).to_be_visible()
    assert eq.tasks("trash") == []
    message.get_by_role("button", name="Undo").click()
    expect(page.get_by_text("Put back 1 task.")).to_be_visible()
    assert [(t.id, t.value) for t in eq.tasks("trash")] == [(task.id, b'{"n": 7}')]
