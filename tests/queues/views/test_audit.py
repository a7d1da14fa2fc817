"""The audit log page."""

from __future__ import annotations

from django.test import Client

from queues.entroq import EntroQ
from queues.models import AuditEntry
from tests.queues.views.helpers import failed, insert


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
