"""The dashboard's pages and actions, on the real database, through Django's test client."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from html import escape, unescape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queues import views
from queues.entroq import EntroQ, ErrorTaskValue, Task, inserting_into
from queues.models import AuditEntry
from tests.helpers import task_table_locked


def htmx(target: str) -> dict[str, str]:
    """Return the headers htmx sends for a request aimed at the element ``#target``."""
    return {"HX-Request": "true", "HX-Target": target}


def insert(eq: EntroQ, queue: str = "jobs", value: bytes = b"{}", **kwargs: object) -> Task:
    inserted, _ = eq.modify(inserting_into(queue, value=value, **kwargs))  # type: ignore[arg-type]
    return inserted[0]


def failed(eq: EntroQ, source: str = "jobs", err: str = "boom") -> tuple[Task, Task]:
    """Insert a task into ``source``, fail it into the error queue; return both."""
    original = insert(eq, source, b'{"n": 1}', attempt=2)
    wrapped = ErrorTaskValue(task=original, err=err).to_json()
    inserted, _ = eq.modify(original.as_deletion(), inserting_into(source + "/err", value=wrapped))
    return original, inserted[0]


def html(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined, no-any-return]


def messages_of(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


# Who may see what.

PAGES = ["/", "/claims", "/audit", "/queue/jobs", f"/tasks/{uuid.uuid4()}"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", PAGES)
def test_a_user_without_a_role_sees_no_page(nobody: Client, path: str) -> None:
    assert nobody.get(path).status_code == 403


def test_a_viewer_reads_stats_and_metadata_but_not_values(viewer: Client, dash: EntroQ) -> None:
    task = insert(dash, value=b'{"secret": "s3cr3t"}')

    assert "jobs" in html(viewer.get("/"))
    page = html(viewer.get("/queue/jobs"))
    assert str(task.id)[:8] in page
    assert "s3cr3t" not in page
    task_page = viewer.get(f"/tasks/{task.id}")
    assert "s3cr3t" not in html(task_page)
    assert "Can see task values" in html(task_page)
    assert viewer.get(f"/tasks/{task.id}/value").status_code == 403
    assert viewer.get(f"/tasks/{task.id}/edit").status_code == 403


def test_a_viewer_cannot_act_even_by_posting_directly(viewer: Client, dash: EntroQ) -> None:
    task = insert(dash)
    for action in ("retry", "release", "move", "delete"):
        data = {"version": task.version, "queue": "elsewhere", "confirmed": "yes"}
        assert viewer.post(f"/tasks/{task.id}/{action}", data).status_code == 403
        assert viewer.post(f"/tasks/{action}", {"task": f"{task.id}:0"}).status_code == 403
    assert dash.tasks("jobs") == [task]


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


# Actions.


def test_retry_puts_an_error_task_back_with_its_id_and_logs_it(
    operator: Client, dash: EntroQ
) -> None:
    original, error_task = failed(dash, "billing")

    response = operator.post(
        f"/tasks/{error_task.id}/retry", {"version": error_task.version}, follow=True
    )

    assert dash.tasks("billing/err") == []
    (back,) = dash.tasks("billing")
    assert (back.id, back.value, back.attempt) == (original.id, original.value, 2)
    assert back.at <= dash.time()
    assert messages_of(response) == ["Retried 1 task."]
    entry = AuditEntry.objects.get()
    assert (entry.username, entry.action, entry.outcome) == ("operator", "retry", "done")
    assert entry.tasks == [
        {"id": str(error_task.id), "version": error_task.version, "done": True, "detail": ""}
    ]


def test_retry_elsewhere_releases_the_task_now(operator: Client, dash: EntroQ) -> None:
    task = insert(dash, "later", arrival_in=3600)
    operator.post(f"/tasks/{task.id}/retry", {"version": task.version})
    (now,) = dash.tasks("later")
    assert now.at <= dash.time()
    assert now.version == task.version + 1


def test_a_stale_version_is_a_conflict_and_nothing_changes(operator: Client, dash: EntroQ) -> None:
    task = insert(dash, "c")
    changed = dash.modify(task.as_change(value=b"newer"))[1][0]

    response = operator.post(
        f"/tasks/{task.id}/move", {"version": task.version, "queue": "other"}, follow=True
    )

    assert dash.tasks("c") == [changed]
    (message,) = messages_of(response)
    assert message.startswith("Nothing was done")
    assert f"changed meanwhile (now version {changed.version})" in message
    assert AuditEntry.objects.get().outcome == "conflict"


def test_a_held_task_needs_force_and_force_needs_its_permission(
    operator: Client, supervisor: Client, dash: EntroQ, worker: EntroQ
) -> None:
    insert(dash, "h")
    held = worker.try_claim("h", duration=60)
    assert held is not None
    data = {"version": held.version}

    refused = operator.post(f"/tasks/{held.id}/release", data, follow=True)
    assert "needs force" in messages_of(refused)[0]
    assert operator.post(f"/tasks/{held.id}/release", {**data, "force": "on"}).status_code == 403
    assert AuditEntry.objects.filter(outcome="refused").count() == 1
    assert dash.tasks("h") == [held]

    supervisor.post(f"/tasks/{held.id}/release", {**data, "force": "on"})
    (released,) = dash.tasks("h")
    assert released.at <= dash.time()
    assert AuditEntry.objects.filter(forced=True, outcome="done").count() == 1


def test_delete_asks_first_then_deletes(operator: Client, dash: EntroQ) -> None:
    task = insert(dash, "d")
    asked = operator.post(f"/tasks/{task.id}/delete", {"version": task.version, "next": "/queue/d"})
    assert asked.status_code == 200
    assert "Delete 1 task?" in html(asked)
    assert dash.tasks("d") == [task]

    done = operator.post(
        f"/tasks/{task.id}/delete",
        {"version": task.version, "confirmed": "yes", "next": "/queue/d"},
    )
    assert done.status_code == 303
    assert done["Location"] == "/queue/d"
    assert dash.tasks("d") == []


def test_move_checks_the_queue_name(operator: Client, dash: EntroQ) -> None:
    task = insert(dash, "m")
    bad = operator.post(f"/tasks/{task.id}/move", {"version": 0, "queue": ""}, follow=True)
    assert messages_of(bad) == ["Cannot move there: queue must not be empty."]
    operator.post(f"/tasks/{task.id}/move", {"version": 0, "queue": "m2"})
    assert [t.id for t in dash.tasks("m2")] == [task.id]
    assert AuditEntry.objects.get().target == "m2"


def test_next_urls_stay_on_this_site(operator: Client, dash: EntroQ) -> None:
    task = insert(dash, "n")
    response = operator.post(
        f"/tasks/{task.id}/release", {"version": 0, "next": "https://evil.example/"}
    )
    assert response["Location"] == f"/tasks/{task.id}"


def test_bulk_retry_does_what_it_can_and_reports_the_rest(operator: Client, dash: EntroQ) -> None:
    pairs = [failed(dash, "bulk") for _ in range(3)]
    stale = pairs[0][1]
    dash.modify(stale.as_change(err="touched"))
    boxes = [f"{err.id}:{err.version}" for _, err in pairs] + ["garbage", "x:1"]

    response = operator.post(
        "/tasks/retry", {"task": boxes, "next": "/queue/bulk/err"}, follow=True
    )

    assert response.redirect_chain[-1][0] == "/queue/bulk/err"
    assert {t.id for t in dash.tasks("bulk")} == {orig.id for orig, _ in pairs[1:]}
    assert [t.id for t in dash.tasks("bulk/err")] == [stale.id]
    (message,) = messages_of(response)
    assert message.startswith("Retried 2 tasks; left 1 alone")
    assert AuditEntry.objects.get().outcome == "partial"


def test_bulk_delete_confirms_the_selection(operator: Client, dash: EntroQ) -> None:
    tasks = [insert(dash, "bd") for _ in range(3)]
    boxes = [f"{t.id}:{t.version}" for t in tasks[:2]]
    asked = operator.post("/tasks/delete", {"task": boxes}, headers=htmx("tasks"))
    assert html(asked).lstrip().startswith('<section id="tasks"')
    assert "Delete 2 tasks?" in html(asked)
    operator.post("/tasks/delete", {"task": boxes, "confirmed": "yes"})
    assert dash.tasks("bd") == [tasks[2]]
    assert operator.post("/tasks/delete", {}, follow=True).status_code == 200


def test_an_htmx_action_ends_with_the_region_it_came_from(operator: Client, dash: EntroQ) -> None:
    _, error_task = failed(dash, "hx")
    response = operator.post(
        "/tasks/retry",
        {"task": f"{error_task.id}:{error_task.version}", "next": "/queue/hx/err"},
        follow=True,
        headers=htmx("tasks"),
    )
    page = html(response)
    assert page.lstrip().startswith('<section id="tasks"')
    assert "Retried 1 task." in page
    assert "No tasks here" in page


def test_posts_need_the_csrf_token(dash: EntroQ, operator: Client) -> None:
    task = insert(dash, "csrf")
    user = User.objects.get(username="operator")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/tasks/{task.id}/release", {"version": 0}).status_code == 403
    page = html(strict.get(f"/tasks/{task.id}"))
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page)
    assert token, "htmx requests carry the token in hx-headers"
    ok = strict.post(f"/tasks/{task.id}/release", {"version": 0}, HTTP_X_CSRFTOKEN=token[1])
    assert ok.status_code == 303


# Editing a value.


def test_edit_validates_shows_a_diff_then_saves_and_requeues(
    operator: Client, dash: EntroQ
) -> None:
    task = insert(dash, "e", b'{"a": 1}', arrival_in=3600)
    form = operator.get(f"/tasks/{task.id}/edit")
    assert form.context["format"] == "json"

    bad = operator.post(
        f"/tasks/{task.id}/edit", {"value": "{nope", "format": "json", "version": 0}
    )
    assert bad.status_code == 400
    assert "Not valid JSON" in html(bad)

    data = {"value": '{"a": 2}', "format": "json", "version": 0}
    preview = operator.post(f"/tasks/{task.id}/edit", data)
    assert ("removed", '-{"a": 1}') in preview.context["diff"]
    assert ("added", '+{"a": 2}') in preview.context["diff"]
    assert dash.tasks("e") == [task], "nothing is saved before confirming"

    operator.post(f"/tasks/{task.id}/edit", {**data, "confirmed": "yes"})
    (saved,) = dash.tasks("e")
    assert saved.value == b'{"a": 2}'
    assert saved.at <= dash.time()
    assert AuditEntry.objects.get().action == "edit"

    stale = operator.post(f"/tasks/{task.id}/edit", {**data, "confirmed": "yes"}, follow=True)
    assert "changed meanwhile" in messages_of(stale)[-1]


def test_edit_refuses_values_over_the_limit(
    operator: Client, dash: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = insert(dash, "e2", b"small")
    monkeypatch.setattr(dash.backend, "max_value_bytes", 100)
    data = {"value": "x" * 101, "format": "text", "version": 0}
    response = operator.post(f"/tasks/{task.id}/edit", data)
    assert response.status_code == 400
    assert "the limit is" in html(response)


# Claims and the audit log.


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


def test_the_audit_log_filters(operator: Client, viewer: Client, dash: EntroQ) -> None:
    kept, gone = insert(dash, "a"), insert(dash, "a")
    operator.post(f"/tasks/{kept.id}/release", {"version": 0})
    operator.post(f"/tasks/{gone.id}/delete", {"version": 0, "confirmed": "yes"})

    def actions(query: str) -> list[str]:
        return [e.action for e in viewer.get("/audit" + query).context["entries"]]

    assert actions("") == ["delete", "release"]
    assert actions("?action=release") == ["release"]
    assert actions(f"?task={gone.id}") == ["delete"]
    assert actions("?user=viewer") == []
    assert actions("?outcome=done") == ["delete", "release"]


# Pages in general.


def test_pages_send_a_strict_security_policy(viewer: Client) -> None:
    response = viewer.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy
    assert "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce
    assert f'nonce="{nonce[1]}"' in html(response)
    config = re.search(r"name=\"htmx-config\" content='([^']+)'", html(response))
    assert config
    assert json.loads(config[1])["allowEval"] is False
    assert " style=" not in html(response)


@pytest.mark.parametrize(
    ("path", "region"),
    [
        ("/", "queues"),
        ("/queue/p", "tasks"),
        ("/tasks/{id}", "task"),
        ("/claims", "claims"),
        ("/audit", "entries"),
    ],
)
def test_each_page_serves_its_region_to_htmx_and_the_whole_page_otherwise(
    operator: Client, dash: EntroQ, path: str, region: str
) -> None:
    task = insert(dash, "p")
    url = path.format(id=task.id)
    full = html(operator.get(url))
    assert full.startswith("<!doctype html>")
    assert f'id="{region}"' in full
    partial = html(operator.get(url, headers=htmx(region)))
    assert partial.lstrip().startswith(f'<section id="{region}"')
    assert "<html" not in partial


# What a review found.


def test_retrying_from_the_task_page_lands_on_the_retried_task(
    operator: Client, dash: EntroQ
) -> None:
    original, error_task = failed(dash, "billing")
    page = html(operator.get(f"/tasks/{error_task.id}"))
    assert f'name="next" value="/tasks/{original.id}"' in page

    response = operator.post(
        f"/tasks/{error_task.id}/retry",
        {"version": error_task.version, "next": f"/tasks/{original.id}"},
        follow=True,
    )

    assert response.status_code == 200
    assert response.context["task"].queue == "billing"
    assert "Retried 1 task." in html(response), "the message is shown, not only queued"


def test_a_task_gone_under_htmx_reloads_the_whole_page(viewer: Client) -> None:
    missing = uuid.uuid4()
    response = viewer.get(f"/tasks/{missing}", headers=htmx("task"))
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/tasks/{missing}"


def test_an_expired_session_sends_htmx_to_the_login_page(client: Client) -> None:
    headers = {**htmx("queues"), "HX-Current-URL": "http://testserver/queue/a?state=claimed"}
    response = client.get("/?refresh=5", headers=headers)
    assert response["HX-Redirect"] == "/accounts/login/?next=/queue/a%3Fstate%3Dclaimed"


@pytest.mark.parametrize(
    "embedded",
    [{"queue": 5}, {"queue": ""}, {"err": 5}, {"id": "not an id"}, {"attempt": -1}],
)
def test_a_malformed_error_record_is_released_in_place(
    operator: Client, dash: EntroQ, embedded: dict[str, object]
) -> None:
    original, error_task = failed(dash, "bad")
    record = json.loads(error_task.value)
    record["task"].update(embedded)
    broken = dash.modify(error_task.as_change(value=json.dumps(record).encode()))[1][0]

    assert operator.get(f"/tasks/{broken.id}").status_code == 200
    response = operator.post("/tasks/retry", {"task": f"{broken.id}:{broken.version}"}, follow=True)

    assert response.status_code == 200
    (released,) = dash.tasks("bad/err")
    assert released.id == broken.id
    assert released.version == broken.version + 1
    assert dash.tasks("bad") == []
    assert original.id


def test_an_error_record_outside_its_error_queue_is_not_rerouted(
    operator: Client, dash: EntroQ
) -> None:
    _, error_task = failed(dash, "secret-target")
    lookalike = insert(dash, "notifications", error_task.value)
    operator.post(f"/tasks/{lookalike.id}/retry", {"version": lookalike.version})
    assert [t.id for t in dash.tasks("notifications")] == [lookalike.id]
    assert dash.tasks("secret-target") == []
    assert "Failure" not in html(operator.get(f"/tasks/{lookalike.id}"))


def test_the_audit_log_names_the_queue_of_deleted_and_retried_tasks(
    operator: Client, dash: EntroQ
) -> None:
    task = insert(dash, "gone")
    _, error_task = failed(dash, "src")
    operator.post(f"/tasks/{task.id}/delete", {"version": 0, "confirmed": "yes"})
    operator.post(f"/tasks/{error_task.id}/retry", {"version": error_task.version})
    assert list(AuditEntry.objects.values_list("action", "queue")) == [
        ("retry", "src/err"),
        ("delete", "gone"),
    ]


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


@pytest.mark.parametrize(
    ("stored", "sent", "saved"),
    [
        (b"a\r\nb\r\n", "a\r\nb\r\nc\r\n", b"a\r\nb\r\nc\r\n"),
        (b"a\nb\n", "a\r\nb\r\nc\r\n", b"a\nb\nc\n"),
        (b"\nleading", "\r\nleading!", b"\nleading!"),
    ],
)
def test_editing_keeps_the_values_line_endings(
    operator: Client, dash: EntroQ, stored: bytes, sent: str, saved: bytes
) -> None:
    task = insert(dash, "le", stored)
    form = html(operator.get(f"/tasks/{task.id}/edit"))
    assert '<textarea id="value-text" name="value" rows="20" spellcheck="false">\n' in form
    data = {"value": sent, "format": "text", "version": 0, "confirmed": "yes"}
    operator.post(f"/tasks/{task.id}/edit", data)
    assert dash.tasks("le")[0].value == saved


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
