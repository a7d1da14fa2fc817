"""End to end: an operator in Chromium logs in, browses, inspects, retries and deletes."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from queues import demo
from queues.entroq import EntroQ, ErrorTaskValue, Task, inserting_into
from queues.models import Departures
from tests.browser.conftest import log_in, screenshot
from tests.helpers import start_manage, task_table_locked

pytestmark = pytest.mark.django_db(transaction=True)


def insert(eq: EntroQ, queue: str, value: bytes = b"{}") -> Task:
    return eq.modify(inserting_into(queue, value=value))[0][0]


def fail(eq: EntroQ, source: str, err: str) -> tuple[Task, Task]:
    original = insert(eq, source, json.dumps({"order": 42, "items": ["a", "b"]}).encode())
    wrapped = ErrorTaskValue(task=original, err=err).to_json()
    inserted, _ = eq.modify(original.as_deletion(), inserting_into(source + "/err", value=wrapped))
    return original, inserted[0]


def test_browse_to_a_task_and_read_its_json_value(
    page: Page, live_server: LiveServer, operator: User
) -> None:
    eq = EntroQ()
    task = insert(eq, "orders/new", b'{"customer": "c-17", "lines": [{"sku": "X", "qty": 2}]}')
    log_in(page, live_server.url, operator)

    page.get_by_role("link", name="orders/new").click()
    expect(page.get_by_role("heading", name="orders/new")).to_be_visible()
    page.get_by_role("link", name=task.id.hex[:8]).click()

    expect(page.get_by_role("heading", name=f"Task {task.id}")).to_be_visible()
    pretty = page.locator("details pre")
    expect(pretty).to_contain_text('"lines": [\n    {\n      "sku": "X"')
    page.get_by_text("Pretty JSON").click()  # collapses
    expect(pretty).to_be_hidden()
    expect(page.get_by_text("Available for")).to_be_visible()


def test_retry_a_failed_task_and_see_it_leave_the_error_queue(
    page: Page, live_server: LiveServer, operator: User
) -> None:
    eq = EntroQ()
    original, error_task = fail(eq, "billing", "card declined")
    other = fail(eq, "billing", "timeout")[1]
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/queue/billing/err")

    page.get_by_label(f"Select task {error_task.id}").check()
    page.get_by_role("button", name="Retry selected").click()

    expect(page.get_by_text("Retried 1 task.")).to_be_visible()
    expect(page.get_by_label(f"Select task {error_task.id}")).to_have_count(0)
    expect(page.get_by_label(f"Select task {other.id}")).to_have_count(1)
    assert page.url == live_server.url + "/queue/billing/err", "htmx swapped the region"
    assert [t.id for t in eq.tasks("billing")] == [original.id]


def test_delete_asks_for_confirmation(page: Page, live_server: LiveServer, operator: User) -> None:
    eq = EntroQ()
    task = insert(eq, "trash")
    keep = insert(eq, "trash")
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/tasks/{task.id}")

    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete 1 task?")).to_be_visible()
    assert len(eq.tasks("trash")) == 2, "nothing is deleted before confirming"
    page.get_by_role("button", name="Delete 1 task").click()

    page.wait_for_url(live_server.url + "/queue/trash")
    expect(page.get_by_text("Deleted 1 task.")).to_be_visible()
    assert [t.id for t in eq.tasks("trash")] == [keep.id]


HOSTILE = [
    b"<script>window.pwned = 1</script>",
    b'<img src="x" onerror="window.pwned = 2">',
    b'<div hx-get="/pwned" hx-trigger="load">x</div>',
]


def test_hostile_values_render_as_text_and_do_nothing(
    page: Page, live_server: LiveServer, operator: User
) -> None:
    eq = EntroQ()
    tasks = [insert(eq, "evil/<b>queue</b>", value) for value in HOSTILE]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page, live_server.url, operator)

    page.goto(live_server.url + "/queue/evil/<b>queue</b>")
    expect(page.get_by_role("heading", name="evil/<b>queue</b>")).to_be_visible()
    for task in tasks:
        page.goto(f"{live_server.url}/tasks/{task.id}")
        expect(page.locator("pre.code")).to_contain_text(task.value.decode())
    page.wait_for_timeout(300)

    assert page.evaluate("window.pwned") is None
    assert not [url for url in requested if "/pwned" in url or url.endswith("/x")]


def test_live_refresh_pauses_while_a_dialog_is_open(
    page: Page, live_server: LiveServer, operator: User
) -> None:
    eq = EntroQ()
    insert(eq, "first")
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/?refresh=2")
    expect(page.get_by_text("refreshing every 2 s")).to_be_visible()

    page.keyboard.press("?")
    expect(page.get_by_role("dialog")).to_be_visible()
    insert(eq, "second")
    page.wait_for_timeout(3_000)
    expect(page.get_by_role("link", name="second")).to_have_count(0)

    page.keyboard.press("Escape")
    expect(page.get_by_role("link", name="second")).to_be_visible(timeout=5_000)


@pytest.mark.postgres
def test_a_live_refresh_that_runs_out_of_time_says_so(
    page: Page, live_server: LiveServer, operator: User, settings: Settings
) -> None:
    settings.ENTROQ = {"DASHBOARD_STATEMENT_SECONDS": 0.5}
    eq = EntroQ()
    insert(eq, "held")
    assert eq.try_claim("held", duration=600)
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/claims?refresh=2")
    expect(page.get_by_role("link", name="held")).to_be_visible()

    with task_table_locked():
        expect(page.get_by_role("alert")).to_contain_text("This took too long", timeout=10_000)
        expect(page.get_by_role("link", name="held")).to_be_visible()  # the page stays

    expect(page.get_by_role("alert")).to_have_count(0, timeout=10_000)


def test_keyboard_search_and_shift_click_ranges(
    page: Page, live_server: LiveServer, operator: User
) -> None:
    eq = EntroQ()
    tasks = [insert(eq, "range") for _ in range(6)]
    log_in(page, live_server.url, operator)
    page.goto(live_server.url + "/queue/range")

    boxes = page.locator('input[name="task"]')
    boxes.nth(1).click()
    boxes.nth(4).click(modifiers=["Shift"])
    expect(page.get_by_text("4 selected")).to_be_visible()
    assert [boxes.nth(i).is_checked() for i in range(6)] == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]

    page.locator("body").press("/")
    expect(page.locator("#goto")).to_be_focused()
    page.keyboard.type(str(tasks[2].id))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(f"/tasks/{tasks[2].id}$"))


def test_screenshots_of_each_page(browser: Browser, live_server: LiveServer, scheme: str) -> None:
    """Save each page, light and dark, in test-artifacts/screenshots for the README."""
    user = User.objects.create_superuser("ops", password="a long test password", email="")
    eq = EntroQ()
    demo.seed(eq, tasks=40)
    for _ in range(3):
        eq.try_claim("emails/send", duration=90)
    claimed = eq.try_claim("images/resize", duration=45)
    assert claimed is not None
    error_task = eq.tasks("billing/charge/err", limit=1)[0]
    # Six hours of failures retried out of the error queue, for its throughput chart.
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=6)
    Departures.objects.bulk_create(
        Departures(
            queue="billing/charge/err",
            minute=start + timedelta(minutes=m),
            count=round(12 + 8 * math.sin(m / 50)),
        )
        for m in range(6 * 60)
    )
    context = browser.new_context(
        color_scheme=scheme,  # type: ignore[arg-type]
        viewport={"width": 1280, "height": 800},
    )
    page = context.new_page()
    log_in(page, live_server.url, user)
    pages = {
        "overview": "/",
        "queue": "/queue/billing/charge/err",
        "task": f"/tasks/{error_task.id}",
        "claims": "/claims",
        "triage": "/triage?queue=billing/charge/err",
    }
    for name, path in pages.items():
        page.goto(live_server.url + path)
        expect(page.locator("main h1").first).to_be_visible()
        if name == "queue":
            expect(page.locator(".throughput svg.spark")).to_be_visible()
        assert screenshot(page, f"{name}-{scheme}").stat().st_size > 10_000
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + "/")
    screenshot(page, f"phone-{scheme}")
    context.close()


def test_a_bulk_retry_with_its_progress_page(
    page: Page, live_server: LiveServer, operator: User, settings: Settings
) -> None:
    settings.ENTROQ = {"BULK_TYPED_CONFIRM": 10}
    eq = EntroQ()
    originals = [fail(eq, "payments", f"declined {i}")[0] for i in range(25)]
    worker = start_manage("eqworker", "--handler", "queues.bulk.work", "--queue", "entroq/bulk")
    try:
        log_in(page, live_server.url, operator)
        page.goto(live_server.url + "/queue/payments/err")
        page.get_by_text("Act on all tasks that match these filters").click()
        page.get_by_role("button", name="Review…").click()
        expect(page.get_by_role("heading", name="Retry 25 tasks?")).to_be_visible()
        page.get_by_label("Type 25 to confirm").fill("25")
        page.get_by_role("button", name="Retry 25 tasks").click()

        expect(page.get_by_text("25 of 25 tasks")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Done", exact=True).first).to_be_visible()
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    assert eq.tasks("payments/err") == []
    assert {t.id for t in eq.tasks("payments")} == {t.id for t in originals}
