"""Actions on tasks: at the versions seen, forced only with the permission, logged."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from queues.entroq import EntroQ
from queues.models import AuditEntry
from tests.queues.views.helpers import failed, html, htmx, insert, messages_of

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
