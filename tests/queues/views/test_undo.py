"""Undo from the dashboard: the success message and the audit log offer it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from queues import bulk
from queues.entroq import EntroQ
from queues.models import AuditEntry, BulkRun, KeptTask, Undoable
from queues.service import client
from tests.queues.views.helpers import failed, html, htmx, insert, messages_of


def undo_url(response: object) -> str:
    """Return where the Undo button a page shows posts to."""
    found = re.findall(
        r'<form class="inline-actions undo" method="post" action="([^"]+)"', html(response)
    )
    assert len(found) == 1, found
    return str(found[0])


def test_a_deleted_task_is_put_back_from_the_success_message(
    operator: Client, dash: EntroQ
) -> None:
    task = insert(dash, "jobs", b'{"keep": true}', attempt=1, err="boom")

    deleted = operator.post(
        f"/tasks/{task.id}/delete",
        {"version": task.version, "confirmed": "yes", "next": "/queue/jobs"},
        follow=True,
    )

    assert messages_of(deleted) == ["Deleted 1 task."]
    assert dash.tasks("jobs") == []
    url = undo_url(deleted)
    undoable = Undoable.objects.get()
    assert url == f"/undo/{undoable.pk}"
    assert undoable.entry == AuditEntry.objects.get(action="delete")
    assert (undoable.username, undoable.action) == ("operator", "delete")

    undone = operator.post(url, {"next": "/queue/jobs"}, follow=True)

    assert messages_of(undone) == ["Put back 1 task."]
    [back] = dash.tasks("jobs")
    assert (back.id, back.value, back.attempt, back.err) == (task.id, b'{"keep": true}', 1, "boom")
    entry = AuditEntry.objects.get(action="undo")
    assert (entry.username, entry.outcome, entry.queue) == ("operator", "done", "jobs")
    assert f"audit entry #{undoable.entry_id}" in entry.detail
    again = operator.post(url, {"next": "/queue/jobs"}, follow=True)
    assert messages_of(again) == ["Already undone: nothing is left to put back."]


def test_a_selection_deleted_from_a_queue_page_is_undone_over_htmx(
    operator: Client, dash: EntroQ
) -> None:
    tasks = [insert(dash, "jobs", str(n).encode()) for n in range(3)]
    form = {
        "task": [f"{t.id}:{t.version}" for t in tasks],
        "confirmed": "yes",
        "next": "/queue/jobs",
    }

    deleted = operator.post("/tasks/delete", form, headers=htmx("tasks"), follow=True)

    assert messages_of(deleted) == ["Deleted 3 tasks."]
    operator.post(undo_url(deleted), {"next": "/queue/jobs"})
    assert sorted(t.value for t in dash.tasks("jobs")) == [b"0", b"1", b"2"]


def test_a_move_of_a_selection_is_undone(operator: Client, dash: EntroQ) -> None:
    task = insert(dash, "here")
    moved = operator.post(
        "/tasks/move",
        {"task": f"{task.id}:{task.version}", "queue": "there", "next": "/queue/there"},
        follow=True,
    )
    assert messages_of(moved) == ["Moved 1 task to there."]

    undone = operator.post(undo_url(moved), {"next": "/queue/here"}, follow=True)

    assert messages_of(undone) == ["Moved back 1 task."]
    assert [t.id for t in dash.tasks("here")] == [task.id]


def test_the_confirmation_says_how_long_a_deletion_can_be_undone(
    operator: Client, dash: EntroQ
) -> None:
    task = insert(dash)
    asked = operator.post(f"/tasks/{task.id}/delete", {"version": task.version})
    assert "You can undo this for 24 hours" in html(asked)


def test_the_audit_log_offers_undo_and_shows_how_much_is_kept(
    operator: Client, viewer: Client, dash: EntroQ
) -> None:
    task = insert(dash, "jobs", b"12345")
    # Followed, so that its message (which offers the undo too) is shown and gone.
    operator.post(
        f"/tasks/{task.id}/delete", {"version": task.version, "confirmed": "yes"}, follow=True
    )
    undoable = Undoable.objects.get()

    log = operator.get("/audit")

    assert "Kept for undo: 1 deleted task (5\xa0bytes), each for 24 hours." in html(log)
    assert undo_url(log) == f"/undo/{undoable.pk}"
    assert "1 task to put back" in html(log)
    operator.post(f"/undo/{undoable.pk}")
    after = operator.get("/audit")
    assert "to put back" not in html(after)
    assert "Kept for undo: 0 deleted tasks" in html(after)
    undone = operator.get("/audit", {"action": "undo"})
    assert [e.action for e in undone.context["entries"]] == ["undo"]


def test_undo_needs_the_permission_of_the_deletion_and_a_post(
    operator: Client, viewer: Client, nobody: Client, dash: EntroQ
) -> None:
    task = insert(dash)
    operator.post(f"/tasks/{task.id}/delete", {"version": task.version, "confirmed": "yes"})
    url = f"/undo/{Undoable.objects.get().pk}"

    assert viewer.post(url).status_code == 403
    assert nobody.post(url).status_code == 403
    assert operator.get(url).status_code == 405
    assert operator.post("/undo/999999").status_code == 404
    assert Client().post(url).status_code == 302  # to the login page
    assert dash.tasks("jobs") == []
    assert KeptTask.objects.get().state == KeptTask.State.KEPT


def test_a_bulk_run_offers_its_undo_on_its_page_once_ended(operator: Client, dash: EntroQ) -> None:
    for _ in range(4):
        insert(dash, "bulky")
    user = User.objects.get(username="operator")
    run = bulk.start(user, "delete", bulk.Scope("bulky"))
    assert "Undo" not in html(operator.get(f"/bulk/{run.pk}"))

    bulk.execute(run)
    page = operator.get(f"/bulk/{run.pk}")

    assert "4 tasks this run deleted can be put back." in html(page)
    undone = operator.post(undo_url(page), {"next": f"/bulk/{run.pk}"}, follow=True)
    assert messages_of(undone) == ["Put back 4 tasks."]
    assert len(dash.tasks("bulky")) == 4


def test_a_triage_group_deleted_is_put_back(operator: Client, dash: EntroQ) -> None:
    failed(dash, "pay", "card declined")
    failed(dash, "pay", "timeout")
    # The error-queue tasks carry their failure in their value: the group of no error.
    started = operator.post("/bulk/start", {"queue": "pay/err", "action": "delete", "group": ""})
    run = BulkRun.objects.get()
    assert started.status_code == 303
    assert run.filters["error_group"] == ""
    bulk.execute(run)
    assert dash.tasks("pay/err") == []

    operator.post(f"/undo/{Undoable.objects.get(run=run).pk}")

    assert len(dash.tasks("pay/err")) == 2


def test_a_task_the_store_refuses_now_is_left_out_and_the_rest_put_back(
    operator: Client, dash: EntroQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    big, small = insert(dash, "jobs", b"x" * 100), insert(dash, "jobs", b"y")
    operator.post(
        "/tasks/delete",
        {"task": [f"{t.id}:{t.version}" for t in (big, small)], "confirmed": "yes"},
    )
    undoable = Undoable.objects.get()
    monkeypatch.setattr(client().backend, "max_value_bytes", 10)  # the limit lowered since

    undone = operator.post(f"/undo/{undoable.pk}", {"next": "/queue/jobs"}, follow=True)

    assert undone.status_code == 200
    said = messages_of(undone)[-1]
    assert said.startswith("Put back 1 task; left 1 out: ")
    assert "the store refuses it now" in said
    assert [t.id for t in dash.tasks("jobs")] == [small.id]


def test_a_retry_from_the_task_page_is_undone_from_its_message(
    operator: Client, dash: EntroQ
) -> None:
    original, error_task = failed(dash, "mail")

    retried = operator.post(
        f"/tasks/{error_task.id}/retry", {"version": error_task.version}, follow=True
    )
    assert [t.id for t in dash.tasks("mail")] == [original.id]

    undone = operator.post(undo_url(retried), {"next": "/queue/mail"}, follow=True)

    assert messages_of(undone) == ["Returned 1 task to the error queue, taking back the retry."]
    assert dash.tasks("mail") == []
    [back] = dash.tasks("mail/err")
    assert (back.id, back.value) == (error_task.id, error_task.value)


def test_undoing_a_forced_delete_needs_the_force_permission(
    operator: Client, supervisor: Client, dash: EntroQ, worker: EntroQ
) -> None:
    insert(dash, "h")
    held = worker.try_claim("h", duration=60)
    assert held is not None
    supervisor.post(
        f"/tasks/{held.id}/delete", {"version": held.version, "confirmed": "yes", "force": "on"}
    )
    undoable = Undoable.objects.get()
    assert undoable.forced

    assert operator.post(f"/undo/{undoable.pk}").status_code == 403
    assert dash.tasks("h") == []
    assert AuditEntry.objects.filter(action="undo", outcome="refused").count() == 1
    supervisor.post(f"/undo/{undoable.pk}")
    assert [t.id for t in dash.tasks("h")] == [held.id]
