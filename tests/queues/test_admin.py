"""The admin's task and audit views: read-only, values deferred, counts capped."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from queues.entroq import EntroQ, ErrorTaskValue, inserting_into
from queues.models import AuditEntry


def staff(*codenames: str) -> Client:
    user = User.objects.create_user("staff", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_task_list_defers_values_and_caps_its_count(dash: EntroQ) -> None:
    dash.modify(inserting_into("a", value=b"VALUE-BYTES"))
    client = staff("view_task")
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/queues/task/")
    assert response.status_code == 200
    task_queries = [q["sql"] for q in queries if "entroq_task" in q["sql"]]
    assert task_queries
    assert not [sql for sql in task_queries if '"value"' in sql or ".value" in sql]
    counts = [sql for sql in task_queries if "COUNT(" in sql.upper()]
    assert counts
    assert all("LIMIT 10001" in sql for sql in counts), counts


@pytest.mark.django_db
def test_tasks_cannot_be_added_changed_or_deleted_in_the_admin(dash: EntroQ) -> None:
    task = dash.modify(inserting_into("a"))[0][0]
    client = staff("view_task", "add_task", "change_task", "delete_task")
    assert client.get("/admin/queues/task/add/").status_code == 403
    page = client.get(f"/admin/queues/task/{task.id}/change/")
    assert page.status_code == 200
    assert b'name="queue"' not in page.content, "no editable fields"
    delete = client.post(f"/admin/queues/task/{task.id}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert dash.tasks("a") == [task]


@pytest.mark.django_db
def test_the_retry_action_needs_the_operate_permission(dash: EntroQ) -> None:
    original = dash.modify(inserting_into("src"))[0][0]
    wrapped = ErrorTaskValue(task=original, err="x").to_json()
    error_task = dash.modify(original.as_deletion(), inserting_into("src/err", value=wrapped))[0][0]
    data = {"action": "retry", "_selected_action": [str(error_task.id)]}

    viewer = staff("view_task")
    assert b'value="retry"' not in viewer.get("/admin/queues/task/").content
    viewer.post("/admin/queues/task/", data)
    assert dash.tasks("src/err") == [error_task]

    User.objects.get(username="staff").user_permissions.add(
        Permission.objects.get(codename="operate_task")
    )
    viewer.post("/admin/queues/task/", data)
    assert [t.id for t in dash.tasks("src")] == [original.id]
    assert AuditEntry.objects.get().detail == "from the admin"


def viewer_staff() -> Client:
    """A staff member of EntroQ viewers: stats and metadata, never values."""
    from django.contrib.auth.models import Group

    user = User.objects.create_user("viewer-staff", is_staff=True)
    user.groups.add(Group.objects.get(name="EntroQ viewers"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "lookup",
    [
        {"value__contains": b"SECRETS".hex()},
        {"value__contains": b"SECRETZ".hex()},
        {"value__startswith": "53"},
        {"value": "x"},
        {"value__gt": "x"},
        {"value__isnull": "0"},
        {"err__contains": "x"},
        {"queue__regex": "^a"},
        {"claimant__isnull": "1"},
    ],
)
def test_the_admin_refuses_lookups_it_does_not_offer(dash: EntroQ, lookup: dict[str, str]) -> None:
    dash.modify(inserting_into("a", value=b"SECRETS"))

    response = viewer_staff().get("/admin/queues/task/", lookup)

    assert response.status_code == 400
    assert b"SECRET" not in response.content


@pytest.mark.django_db
def test_the_admin_keeps_its_own_search_and_filters(dash: EntroQ) -> None:
    [task], _ = dash.modify(inserting_into("billing/charge", value=b"SECRETS"))
    AuditEntry.objects.create(username="x", action="retry", outcome="done")
    client = staff("view_task", "view_auditentry")

    by_queue = client.get("/admin/queues/task/", {"q": "billing/"})
    by_id = client.get("/admin/queues/task/", {"q": str(task.id)})
    ordered = client.get("/admin/queues/task/", {"o": "2.-1"})
    filtered = client.get(
        "/admin/queues/auditentry/", {"action__exact": "retry", "forced__exact": "0"}
    )
    by_tasks = client.get("/admin/queues/auditentry/", {"tasks__icontains": "x"})

    assert [r.status_code for r in (by_queue, by_id, ordered, filtered)] == [200] * 4
    assert str(task.id).encode() in by_queue.content
    assert str(task.id).encode() in by_id.content
    assert b"1 audit entry" in filtered.content or b"retry" in filtered.content
    assert by_tasks.status_code == 400
