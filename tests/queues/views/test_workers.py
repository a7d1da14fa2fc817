"""The workers page, its stop button, and the queue page's count of consumers."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from queues import liveness
from queues.liveness import Announcement, Pulse
from queues.models import AuditEntry, WorkerProcess
from tests.queues.views.helpers import html, htmx

pytestmark = pytest.mark.django_db


def announce(*queues: str, host: str = "box-1") -> Announcement:
    worker = Announcement.of_this_process("database", queues or ("jobs",), handler="app.work")
    worker = Announcement(**{**worker.__dict__, "host": host})
    liveness.announce(worker)
    return worker


def test_the_page_lists_workers_with_their_state_counts_and_held_tasks(viewer: Client) -> None:
    alive = announce("jobs", "mail", host="alive-box")
    held = uuid.uuid4()
    liveness.beat(alive, Pulse.of(12, 3, [held]))
    stale = announce(host="stale-box")
    WorkerProcess.objects.filter(id=stale.id).update(
        last_beat=timezone.now() - timedelta(minutes=5)
    )

    response = viewer.get("/workers")

    assert response.status_code == 200
    page = html(response)
    assert [s.state for s in response.context["workers"]] == ["alive", "stale"]
    assert response.context["live"] == 1
    assert f"alive-box:{alive.pid}" in page
    assert "stale-box" in page
    assert f'href="/tasks/{held}"' in page
    assert '<a href="/queue/mail">mail</a>' in page
    assert "Stop worker" not in page, "a viewer may not stop workers"
    assert 'aria-current="page">Workers' in page


def test_the_page_filters_by_queue_and_refreshes_its_region(viewer: Client) -> None:
    announce("jobs", host="jobs-box")
    announce("mail", host="mail-box")
    response = viewer.get("/workers", {"queue": "mail"}, headers=htmx("workers"))
    page = html(response)
    assert "mail-box" in page
    assert "jobs-box" not in page
    assert "<html" not in page, "only the region"


def test_an_operator_stops_a_worker_and_the_audit_log_says_so(operator: Client) -> None:
    worker = announce(host="busy-box")
    page = html(operator.get("/workers"))
    assert f"Stop worker busy-box:{worker.pid}" in page

    response = operator.post(f"/workers/{worker.id}/stop", follow=True)

    assert response.status_code == 200
    assert "to stop after the tasks in hand" in html(response)
    assert [s.state for s in response.context["workers"]] == ["stopping"]
    assert liveness.beat(worker, Pulse()) is True
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username) == (liveness.STOP_WORKER, "operator")


def test_stopping_needs_the_operate_permission_and_a_post(viewer: Client, operator: Client) -> None:
    worker = announce()
    assert viewer.post(f"/workers/{worker.id}/stop").status_code == 403
    assert operator.get(f"/workers/{worker.id}/stop").status_code == 405
    assert operator.post(f"/workers/{uuid.uuid4()}/stop").status_code == 404
    assert operator.post("/workers/not-a-uuid/stop").status_code == 404
    assert WorkerProcess.objects.get().stop_requested is None
    assert not AuditEntry.objects.exists()


def test_the_page_needs_a_login_and_the_view_permission(client: Client) -> None:
    assert client.get("/workers").status_code == 302
    client.force_login(User.objects.create_user("nobody"))
    assert client.get("/workers").status_code == 403


def test_long_gone_workers_are_pruned_when_the_page_is_read(viewer: Client) -> None:
    gone = announce()
    WorkerProcess.objects.filter(id=gone.id).update(
        last_beat=timezone.now() - liveness.PRUNE_AFTER - timedelta(minutes=1)
    )
    assert "No worker has announced itself" in html(viewer.get("/workers"))
    assert not WorkerProcess.objects.exists()


def test_a_queue_page_says_how_many_workers_consume_it(viewer: Client) -> None:
    announce("jobs")
    announce("jobs", "mail")
    page = html(viewer.get("/queue/jobs"))
    assert 'hx-get="/workers/consuming?name=jobs"' in page
    assert html(viewer.get("/workers/consuming", {"name": "jobs"})) == (
        '<a href="/workers?queue=jobs">2 workers consume it</a>'
    )
    assert "1 worker consumes it" in html(viewer.get("/workers/consuming", {"name": "mail"}))
    assert "0 workers consume it" in html(viewer.get("/workers/consuming", {"name": "x"}))
