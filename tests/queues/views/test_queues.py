"""The pages over every queue: the overview, and the tasks held right now."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from queues.entroq import EntroQ
from queues.views import queues as views
from tests.queues.views.helpers import failed, html, htmx, insert

# The queues overview.


def test_the_overview_shows_each_queue_with_its_error_queue_and_problems(
    viewer: Client, dash: EntroQ, worker: EntroQ
) -> None:
    for _ in range(3):
        insert(dash, "mail")
    failed(dash, "billing")
    claimed = worker.try_claim("mail", duration=60)
    assert claimed is not None

    response = viewer.get("/")

    rows = {row.stat.name: row for row in response.context["rows"]}
    assert set(rows) == {"mail", "billing/err"}
    mail = rows["mail"]
    assert (mail.stat.size, mail.stat.available, mail.stat.claimed, mail.errors) == (3, 2, 1, 0)
    assert mail.problems == []
    assert rows["billing/err"].errors is None, "an error queue has no error queue"
    assert rows["billing/err"].problems == ["failed tasks"]
    assert 'class="problem"' in html(response)


def test_the_overview_flags_crash_loops_and_old_tasks(
    viewer: Client, dash: EntroQ, settings: object
) -> None:
    insert(dash, "old", at=dash.time() - timedelta(hours=1))
    task = insert(dash, "looping")
    for _ in range(5):
        claimed = dash.try_claim("looping", duration=0)
        assert claimed is not None
    rows = {row.stat.name: row for row in viewer.get("/").context["rows"]}
    assert rows["old"].problems == ["tasks waiting long"]
    assert rows["old"].age is not None
    assert rows["old"].age >= 3600
    assert rows["looping"].looping
    assert rows["looping"].problems == ["a task claimed 5 times"]
    assert task.id


def test_the_overview_filters_by_prefix_and_sorts(viewer: Client, dash: EntroQ) -> None:
    for name, count in (("a/one", 1), ("a/two", 3), ("b/three", 2)):
        for _ in range(count):
            insert(dash, name)

    def names(query: str) -> list[str]:
        return [row.stat.name for row in viewer.get("/" + query).context["rows"]]

    assert names("?prefix=a/") == ["a/one", "a/two"]
    assert names("?sort=size&dir=desc") == ["a/two", "b/three", "a/one"]
    assert names("?sort=size") == ["a/one", "b/three", "a/two"]
    assert names("?sort=bogus") == ["a/one", "a/two", "b/three"]
    assert "No queue starts with" in html(viewer.get("/?prefix=zzz"))


def test_the_overview_pages_the_sorted_queues(viewer: Client, dash: EntroQ, settings: Any) -> None:
    settings.ENTROQ = {"DASHBOARD_QUEUES_PER_PAGE": 2}
    for count, name in enumerate(("e", "d", "c", "b", "a"), start=1):
        for _ in range(count):
            insert(dash, name)

    def page(query: str) -> tuple[list[str], str]:
        response = viewer.get("/" + query)
        return [row.stat.name for row in response.context["rows"]], html(response)

    first, text = page("?sort=size&dir=desc")
    last, _ = page("?sort=size&dir=desc&page=3")
    assert (first, last) == (["a", "b"], ["e"])
    assert "5 queues, 15 tasks" in text
    assert "Showing 1\N{EN DASH}2." in text
    assert "Page 1 of 3" in text
    assert 'href="?sort=size&amp;dir=desc&amp;page=2"' in text
    assert page("?page=99")[0] == ["e"], "a page past the end shows the last"
    assert page("?page=2&sort=name")[0] == ["c", "d"]


@pytest.mark.parametrize(
    ("asked", "served"), [("", "5"), ("1", "2"), ("0", "0"), ("off", "0"), ("x", "5"), ("9e9", "5")]
)
def test_the_refresh_period_is_clamped_on_the_server(
    viewer: Client, asked: str, served: str
) -> None:
    page = html(viewer.get(f"/?refresh={asked}"))
    assert f'data-refresh="{served}"' in page


def test_an_htmx_refresh_gets_only_the_table(viewer: Client, dash: EntroQ) -> None:
    insert(dash, "mail")
    partial = viewer.get("/?sort=size", headers=htmx("queues"))
    assert partial.status_code == 200
    assert "<html" not in html(partial)
    assert html(partial).lstrip().startswith('<section id="queues"')
    assert "mail" in html(partial)
    assert "HX-Target" in partial["Vary"]
    other_target = viewer.get("/", headers=htmx("main"))
    assert "<html" in html(other_target), "an unknown target gets the whole page"


# Tasks held right now.


def test_claims_group_held_tasks_by_claimant(viewer: Client, dash: EntroQ, worker: EntroQ) -> None:
    for queue in ("x", "x", "y"):
        insert(dash, queue)
    first = worker.try_claim("x", duration=60)
    second = worker.try_claim("y", duration=60)
    third = dash.try_claim("x", duration=30)
    assert first
    assert second
    assert third

    response = viewer.get("/claims")

    groups = dict(response.context["groups"])
    assert {t.id for t in groups[worker.id]} == {first.id, second.id}
    assert [t.id for t in groups[dash.id]] == [third.id]
    assert "lease" in html(response).lower()
    partial = viewer.get("/claims", headers=htmx("claims"))
    assert html(partial).lstrip().startswith('<section id="claims"')


def test_claims_show_a_bounded_number_of_held_tasks(
    viewer: Client, dash: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "MAX_CLAIMS_SHOWN", 3)
    for queue in ("x", "x", "x", "y", "y"):
        insert(dash, queue)
    while dash.try_claim("x", "y", duration=60):
        pass

    response = viewer.get("/claims")

    assert (response.context["count"], response.context["total"]) == (3, 5)
    assert "the first 3 queue by queue of the 5 held a moment ago" in html(response)
