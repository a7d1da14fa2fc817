"""What hostile and careless input gets from the dashboard: a clear 4xx, nothing written.

Each case was a 500 once: the nil UUID, which the client API refuses as a task ID,
and NUL characters, which PostgreSQL refuses in text.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from queues.entroq import EntroQ, Task, inserting_into
from queues.models import ApiToken, AuditEntry, BulkRun

NIL = str(uuid.UUID(int=0))


def insert(eq: EntroQ, queue: str = "jobs") -> Task:
    return eq.modify(inserting_into(queue, value=b"{}"))[0][0]


@pytest.mark.parametrize(
    "path",
    [
        f"/tasks/{NIL}",
        f"/tasks/{NIL}/value",
        f"/tasks/{NIL}/edit",
        f"/tasks/{NIL}/retry",
    ],
)
def test_the_nil_uuid_is_no_task(supervisor: Client, path: str) -> None:
    get = supervisor.get(path)
    post = supervisor.post(path, {"version": "0"})

    assert get.status_code in (404, 405)
    assert post.status_code in (404, 405)
    assert not AuditEntry.objects.exists(), "nothing to log: nothing was tried"


def test_the_nil_uuid_in_a_form_or_a_link_is_no_task(supervisor: Client, dash: EntroQ) -> None:
    task = insert(dash)
    low = "0" * 32

    found = supervisor.get("/queue/jobs", {"id": NIL})
    older = supervisor.get("/queue/jobs", {"after": f"0.{low}"})
    newer = supervisor.get("/queue/jobs", {"before": f"9999999999999999.{low}"})
    gone = supervisor.get("/go", {"q": NIL})
    audit = supervisor.get("/audit", {"task": NIL})
    selected = supervisor.post(
        "/tasks/delete", {"task": [f"{NIL}:0", f"{task.id}:{task.version}"], "confirmed": "yes"}
    )

    assert [r.status_code for r in (found, older, newer, audit)] == [200] * 4
    assert gone.status_code in (302, 404)
    assert selected.status_code == 303
    assert dash.tasks("jobs") == [], "the real task went; the nil one was never one"
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.outcome) == ("delete", "done")
    assert [t["id"] for t in entry.tasks] == [str(task.id)]


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/audit", {"user": "a\x00b"}),
        ("get", "/queue/jobs", {"q": "a\x00b"}),
        ("get", "/", {"prefix": "a\x00"}),
        ("get", "/triage", {"queue": "jobs/err", "x": "\x00"}),
        ("post", "/tokens/abc%00def/revoke", {}),
        ("get", "/queue/a%00b", {}),
    ],
)
def test_nul_characters_in_a_url_are_400(
    supervisor: Client, method: str, path: str, data: dict[str, str]
) -> None:
    response = getattr(supervisor, method)(path, data)

    assert response.status_code == 400
    assert b"NUL" in response.content
    assert not AuditEntry.objects.exists()


def test_nul_characters_in_a_token_form_are_400(supervisor: Client) -> None:
    named = supervisor.post("/tokens", {"name": "a\x00b", "grants": "jobs/=read"})
    granted = supervisor.post("/tokens", {"name": "fine", "grants": "jo\x00bs/=read"})

    assert (named.status_code, granted.status_code) == (400, 400)
    assert b"NUL" in named.content
    assert b"NUL" in granted.content
    assert not ApiToken.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_nul_character_in_a_bulk_group_is_refused(operator: Client, dash: EntroQ) -> None:
    insert(dash, "jobs/err")
    form = {"queue": "jobs/err", "action": "delete", "group": "timeout\x00", "typed": "1"}

    planned = operator.post("/bulk/plan", form, follow=True)
    started = operator.post("/bulk/start", form, follow=True)

    for response in (planned, started):
        assert response.redirect_chain[0][1] == 303
        assert "must not contain NUL characters" in response.content.decode()
    assert not BulkRun.objects.exists()
    assert len(dash.tasks("jobs/err")) == 1


def test_a_value_nested_too_deeply_is_shown_as_text_and_acted_on(
    supervisor: Client, dash: EntroQ
) -> None:
    deep = b"[" * 5000 + b"]" * 5000  # within the inline limit, beyond Python's parser
    plain = dash.modify(inserting_into("jobs", value=deep))[0][0]
    failed = dash.modify(inserting_into("jobs/err", value=deep))[0][0]

    page = supervisor.get(f"/tasks/{plain.id}")
    error_page = supervisor.get(f"/tasks/{failed.id}")
    triage = supervisor.get("/triage", {"queue": "jobs/err"})
    retried = supervisor.post(f"/tasks/{failed.id}/retry", {"version": failed.version})

    assert [r.status_code for r in (page, error_page, triage)] == [200, 200, 200]
    assert retried.status_code == 303
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.outcome) == ("retry", "done"), "released: no error record"
