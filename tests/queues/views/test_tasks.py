"""The pages of tasks: a queue's tasks (paged, filtered, searched), one task, its value."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html import escape, unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queues import views
from queues.entroq import EntroQ, inserting_into
from tests.helpers import task_table_locked
from tests.queues.views.helpers import failed, html, htmx, insert

# The tasks of one queue.


def test_a_queue_pages_by_keyset_in_both_directions(viewer: Client, dash: EntroQ) -> None:
    start = dash.time() - timedelta(hours=1)
    tasks = [insert(dash, "big", at=start + timedelta(seconds=i)) for i in range(25)]

    def page(query: str) -> tuple[list[uuid.UUID], str | None, str | None]:
        found = viewer.get("/queue/big" + query).context["page"]
        return [t.id for t in found.tasks], found.older, found.newer

    first, older, newer = page("?limit=10")
    assert first == [t.id for t in tasks[:10]]
    assert older is None
    assert newer
    second, _older2, newer2 = page(f"?limit=10&after={newer}")
    assert second == [t.id for t in tasks[10:20]]
    third, older3, newer3 = page(f"?limit=10&after={newer2}")
    assert third == [t.id for t in tasks[20:]]
    assert newer3 is None
    assert older3
    back, _, _ = page(f"?limit=10&before={older3}")
    assert back == [t.id for t in tasks[10:20]]

    newest, older_n, newer_n = page("?limit=10&order=newest")
    assert newest == [t.id for t in reversed(tasks[15:])]
    assert newer_n is None
    assert older_n
    after_newest, _, _ = page(f"?limit=10&order=newest&before={older_n}")
    assert after_newest == [t.id for t in reversed(tasks[5:15])]


def test_queue_filters_and_clamps(viewer: Client, dash: EntroQ, worker: EntroQ) -> None:
    for attempt in range(4):
        insert(dash, "f", attempt=attempt)
    held = worker.try_claim("f", duration=60)
    assert held is not None

    def ids(query: str) -> list[uuid.UUID]:
        return [t.id for t in viewer.get("/queue/f" + query).context["page"].tasks]

    assert ids("?state=claimed") == [held.id]
    assert len(ids("?state=available")) == 3
    assert len(ids("?attempt=2")) == 2
    assert len(ids("?state=nonsense")) == 4, "an unknown state is ignored"
    assert viewer.get("/queue/f?limit=100000").context["limit"] == 500
    assert viewer.get("/queue/f?limit=-3").context["limit"] == 10
    assert len(ids("?after=garbage&before=1.2.3")) == 4, "garbled cursors are ignored"
    assert len(ids(f"?attempt={2**80}")) == 0


def test_a_queue_page_never_loads_whole_values(operator: Client, dash: EntroQ) -> None:
    insert(dash, "v", b"A" * 5000 + b"TAIL")
    with CaptureQueriesContext(connection) as queries:
        page = html(operator.get("/queue/v"))
    assert "TAIL" not in page
    assert "AAAA" in page
    listing = [q["sql"] for q in queries if "substr(value" in q["sql"]]
    assert listing, "the listing asks the database for a prefix of each value"


def test_an_invalid_queue_name_is_not_found(viewer: Client) -> None:
    assert viewer.get("/queue/" + "x" * 600).status_code == 404


@pytest.mark.parametrize("name", ["jobs#1", "a?b", "a%41", "sp ace", "a/../b", "x/./y", ".."])
def test_links_reach_queues_with_any_name(viewer: Client, dash: EntroQ, name: str) -> None:
    insert(dash, name)
    insert(dash, "b")
    page = html(viewer.get("/"))
    links = re.findall(r'<a href="([^"]+)">' + re.escape(escape(name)) + "</a>", page)
    assert len(links) == 1
    href = unescape(links[0])
    assert "/../" not in href + "/"
    assert "/./" not in href + "/"
    assert "#" not in href
    assert viewer.get(href).context["queue"] == name
    filters = re.search(r'class="filters" method="get" hx-get="([^"]+)"', html(viewer.get(href)))
    assert filters
    assert unescape(filters[1]) == href


def test_an_empty_page_past_the_end_leads_back(viewer: Client, dash: EntroQ) -> None:
    task = insert(dash, "drained")
    cursor = views.encode_cursor(task)
    page = html(viewer.get(f"/queue/drained?after={cursor}"))
    assert "No tasks here" in page
    assert "Back to the first page" in page


def test_the_queue_page_goes_to_a_task_id(viewer: Client, dash: EntroQ) -> None:
    task = insert(dash, "g")
    assert viewer.get(f"/queue/g?id={task.id}")["Location"] == f"/tasks/{task.id}"
    assert viewer.get(f"/queue/g?id={task.id}", headers=htmx("tasks"))["HX-Redirect"] == (
        f"/tasks/{task.id}"
    )
    missing = viewer.get(f"/queue/g?id={uuid.uuid4()}")
    assert "finished, deleted, or never existed" in html(missing)
    assert "Not a task ID: nope" in html(viewer.get("/queue/g?id=nope"))


def test_a_queue_page_charts_the_tasks_leaving_it(viewer: Client, dash: EntroQ) -> None:
    from queues.models import Departures

    insert(dash, "q")
    ten_minutes_ago = (timezone.now() - timedelta(minutes=10)).replace(second=0, microsecond=0)
    Departures.objects.create(queue="q", minute=ten_minutes_ago, count=50)
    Departures.objects.create(queue="other", minute=ten_minutes_ago, count=7)

    page = viewer.get("/queue/q")

    rates = page.context["throughput"]
    assert len(rates) == 6 * 12 + 1  # every 5 min of 6 h, ends included
    assert [rate for _, rate in rates if rate] == [10.0]  # 50 in 5 min
    assert '<svg class="spark"' in html(page)
    assert "tasks leaving a minute 0 to 10" in html(page)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the lock must wait for no test transaction
def test_a_page_whose_query_runs_out_of_time_says_so(
    viewer: Client, dash: EntroQ, settings: Any
) -> None:
    settings.ENTROQ = {"DASHBOARD_STATEMENT_SECONDS": 0.2}
    insert(dash, "q")
    with task_table_locked():
        page = viewer.get("/queue/q")
        partial = viewer.get("/queue/q", headers=htmx("tasks"))

    assert page.status_code == 503
    assert "This took too long" in html(page)
    assert "<html" in html(page)
    assert partial.status_code == 503
    assert (partial["HX-Retarget"], partial["HX-Reswap"]) == ("#alerts", "innerHTML")
    assert "<html" not in html(partial)
    assert "This took too long" in html(partial)
    assert viewer.get("/queue/q").status_code == 200


# Searching values.


def test_a_value_search_is_bounded_and_says_where_it_stopped(
    operator: Client, dash: EntroQ, settings: Any
) -> None:
    settings.ENTROQ = {"DASHBOARD_SEARCH_SCAN": 10}
    start = dash.time() - timedelta(hours=1)
    for i in range(25):
        value = b'{"customer": "acme"}' if i in (3, 17) else b'{"customer": "other"}'
        insert(dash, "s", value, at=start + timedelta(seconds=i))

    first = operator.get("/queue/s", {"q": "acme"})
    assert len(first.context["page"].tasks) == 1
    search = first.context["search"]
    assert search.stopped
    assert "reads at most 10 tasks at a time" in html(first)

    second = operator.get("/queue/s", {"q": "acme", "after": search.stopped})
    assert len(second.context["page"].tasks) == 1
    third = operator.get("/queue/s", {"q": "acme", "after": second.context["search"].stopped})
    assert third.context["page"].tasks == []
    assert "Searched to the end of the queue" in html(third)


def test_only_those_who_may_see_values_search_them(viewer: Client, dash: EntroQ) -> None:
    insert(dash, "s", b"secret word")
    page = viewer.get("/queue/s", {"q": "secret"})
    assert page.context["search"] is None
    assert len(page.context["page"].tasks) == 1, "the plain listing, not a search"


def test_a_value_search_that_runs_too_long_is_stopped(
    operator: Client, dash: EntroQ, settings: Any
) -> None:
    settings.ENTROQ = {"DASHBOARD_SEARCH_SECONDS": 0.001, "DASHBOARD_SEARCH_SCAN": 100_000}
    dash.modify(*[inserting_into("slow", value=b"x" * 2000) for _ in range(20_000)])
    page = operator.get("/queue/slow", {"q": "needle"})
    assert "The search took over 0.001 s and was stopped" in html(page)


# One task.


def test_a_task_page_shows_every_field_and_the_claim_in_words(
    operator: Client, dash: EntroQ, worker: EntroQ
) -> None:
    insert(dash, "t", b'{"b": [1, 2], "a": "\\u00e9"}', attempt=3, err="it broke")
    held = worker.try_claim("t", duration=60)
    assert held is not None

    response = operator.get(f"/tasks/{held.id}")

    page = unescape(html(response))
    assert f"Claimed by {worker.id} for" in page
    for field in (str(held.id), str(held.version), "it broke", "t"):
        assert field in page
    assert response.context["value"].kind == "json"
    assert '"b": [\n    1,' in page, "JSON is pretty-printed"
    assert "é" in page
    assert "no-store" in response["Cache-Control"]


def test_a_task_page_shows_text_binary_and_large_values_safely(
    operator: Client, dash: EntroQ, settings: object
) -> None:
    text = insert(dash, "t", "plain text ✓".encode())
    binary = insert(dash, "t", b"\x00\x01\x02\x03\xff" * 8)
    large = insert(dash, "t", b"x" * (256 * 1024 + 1))

    assert "plain text ✓" in html(operator.get(f"/tasks/{text.id}"))
    dump = html(operator.get(f"/tasks/{binary.id}"))
    assert "00000000  00 01 02 03 ff 00" in dump
    assert "|................|" in dump
    big = operator.get(f"/tasks/{large.id}")
    assert big.context["value"].kind == "large"
    assert "xxxxxxxx" not in html(big)
    download = operator.get(f"/tasks/{large.id}/value")
    assert download.content == large.value
    assert download["Content-Disposition"] == f'attachment; filename="task-{large.id}.bin"'
    assert download["Content-Type"] == "application/octet-stream"
    assert "no-store" in download["Cache-Control"]


def test_an_error_queue_task_shows_the_failure_and_the_original(
    operator: Client, dash: EntroQ
) -> None:
    original, error_task = failed(dash, "billing", err="card declined")
    response = operator.get(f"/tasks/{error_task.id}")
    page = html(response)
    assert response.context["error"].task.id == original.id
    assert "card declined" in page
    assert str(original.id) in page
    assert "Retry in billing" in page
    assert response.context["original_value"].text == '{\n  "n": 1\n}'


def test_a_missing_task_says_so(viewer: Client) -> None:
    response = viewer.get(f"/tasks/{uuid.uuid4()}")
    assert response.status_code == 404
    assert "finished, deleted, or never existed" in html(response)


def test_a_task_gone_under_htmx_reloads_the_whole_page(viewer: Client) -> None:
    missing = uuid.uuid4()
    response = viewer.get(f"/tasks/{missing}", headers=htmx("task"))
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/tasks/{missing}"


def test_go_opens_a_task_or_filters_queues(viewer: Client) -> None:
    id = uuid.uuid4()
    assert viewer.get("/go", {"q": f" {id} "})["Location"] == f"/tasks/{id}"
    assert viewer.get("/go", {"q": "billing/"})["Location"] == "/?prefix=billing%2F"


HOSTILE = [
    b"<script>alert(1)</script>",
    b'<div hx-get="/x" hx-trigger="load">x</div>',
    b'"><img src=x onerror=alert(1)>',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_and_names_render_as_text(
    operator: Client, dash: EntroQ, value: bytes
) -> None:
    queue = "q/" + value.decode()
    task = insert(dash, queue, value, err=value.decode())
    for path in ("/", f"/queue/{queue}", f"/tasks/{task.id}"):
        page = html(operator.get(path))
        assert value.decode() not in page, path
        assert "&lt;" in page, path
