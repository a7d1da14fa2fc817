"""Pausing from the command line and the dashboard: claims stop, tasks stay, all audited."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from queues import entroq
from queues.entroq import EntroQ
from queues.models import AuditEntry
from tests.queues.views.helpers import html, insert, messages_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eq() -> Iterator[EntroQ]:
    with EntroQ(entroq.DjangoBackend()) as client:
        yield client


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("eq", *args, stdout=out)
    return out.getvalue()


def test_eq_pauses_lists_and_resumes_and_the_audit_log_says_so(eq: EntroQ) -> None:
    insert(eq, "mail/out")

    assert run("pause", "mail/*", "web").splitlines() == ["mail/*: paused", "web: paused"]
    assert run("pause", "web").splitlines() == ["web: already paused"]
    listed = run("paused").splitlines()
    assert [line.split()[0] for line in listed] == ["PAUSED", "mail/*", "web"]
    assert eq.try_claim("mail/out") is None

    assert run("resume", "mail/out", "mail/*").splitlines() == [
        "mail/*: resumed",
        "mail/out: was not paused",
    ]
    assert eq.try_claim("mail/out") is not None
    entries = list(AuditEntry.objects.order_by("id"))
    assert [(e.action, e.queue) for e in entries] == [
        ("pause", "mail/*, web"),
        ("pause", "web"),
        ("resume", "mail/out, mail/*"),
    ]
    assert entries[0].username.endswith("(manage.py eq)")
    assert "already paused: web" in entries[1].detail


def test_eq_refuses_a_pause_no_queue_can_have() -> None:
    with pytest.raises(CommandError, match="must not be empty"):
        run("pause", "")


def test_an_operator_pauses_and_resumes_a_queue_from_its_page(eq: EntroQ, operator: Client) -> None:
    insert(eq, "jobs")
    page = operator.get("/queue/jobs")
    assert "Pause claims" in html(page)

    paused = operator.post("/pause", {"queue": "jobs", "next": "/queue/jobs"}, follow=True)

    assert messages_of(paused) == ["Paused jobs: workers claim nothing from it until resumed."]
    assert "Resume jobs" in html(paused)
    assert eq.try_claim("jobs") is None
    overview = html(operator.get("/"))
    assert "Paused:" in overview
    assert ">jobs</span>" in overview
    resumed = operator.post("/resume", {"queue": "jobs", "next": "/queue/jobs"}, follow=True)
    assert messages_of(resumed) == ["Resumed jobs: its waiting workers claim again now."]
    assert eq.try_claim("jobs") is not None
    entry = AuditEntry.objects.get(action="pause")
    assert (entry.username, entry.queue, entry.detail) == (
        "operator",
        "jobs",
        "paused jobs (via the dashboard)",
    )


def test_a_prefix_pause_shows_on_each_of_its_queues(eq: EntroQ, operator: Client) -> None:
    insert(eq, "billing/invoices")
    operator.post("/pause", {"queue": "billing/*"})

    page = html(operator.get("/queue/billing/invoices"))

    assert "paused with billing/*" in page
    assert "Resume billing/*" in page


def test_a_viewer_cannot_pause(eq: EntroQ, viewer: Client) -> None:
    insert(eq, "jobs")

    assert "Pause claims" not in html(viewer.get("/queue/jobs"))
    assert viewer.post("/pause", {"queue": "jobs"}).status_code == 403
    assert eq.paused() == []
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("queue", ["", "x" * 501, "a\x00b"])
def test_a_pause_of_no_queue_is_a_message_not_an_error(operator: Client, queue: str) -> None:
    response = operator.post("/pause", {"queue": queue}, follow=True)

    assert response.status_code == 200
    assert messages_of(response)[0].startswith("Nothing was paused:")
    assert EntroQ(entroq.DjangoBackend()).paused() == []


def test_pausing_needs_a_post(operator: Client) -> None:
    assert operator.get("/pause").status_code == 405
