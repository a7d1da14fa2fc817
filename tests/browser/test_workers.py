"""End to end: a real ``eqworker`` appears on /workers in Chromium, and stops when asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from queues.entroq import EntroQ, inserting_into
from tests.browser.conftest import log_in, screenshot
from tests.helpers import ROOT, start_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_watch_a_worker_appear_and_stop_it(
    page: Page, live_server: LiveServer, operator: User, tmp_path: Path
) -> None:
    eq = EntroQ()
    for _ in range(3):
        eq.modify(inserting_into("orders/new"))
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/workers?refresh=2")
    expect(page.get_by_text("No worker has announced itself")).to_be_visible()

    process = start_manage(
        "eqworker",
        "--queue",
        "orders/new",
        "--handler",
        "tests.handlers.slow",
        "--beat",
        "1",
        "--concurrency",
        "2",
        EQ_TEST_LOG=str(tmp_path / "log"),
        EQ_TEST_SLEEP="5",
    )
    try:
        row = page.locator("tr", has_text=f":{process.pid}")
        expect(row).to_be_visible(timeout=20_000)  # the live refresh brings it in
        expect(row.get_by_text("alive")).to_be_visible()
        expect(row).to_contain_text("orders/new")
        expect(row.locator("td").nth(10)).to_contain_text("2", timeout=10_000)  # holding two
        shot = screenshot(page, "workers-light")
        shutil.copy(shot, ROOT / "docs" / "screenshots" / "workers-light.png")

        row.get_by_role("button", name="Stop worker").click()

        expect(page.get_by_text("to stop after the tasks in hand")).to_be_visible()
        expect(row.get_by_text("stopping")).to_be_visible()
        process.wait(30)
        expect(row.get_by_text("exited")).to_be_visible(timeout=10_000)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    events = (tmp_path / "log").read_text().split()
    assert events.count("start") == events.count("finish"), "it finished every task in hand"
    assert len(eq.tasks("orders/new")) == 3 - events.count("finish")

    page.goto(live_server.url + "/queue/orders/new")
    expect(page.get_by_text("0 workers consume it")).to_be_visible()
