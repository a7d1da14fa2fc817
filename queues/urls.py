from django.urls import converters, path, register_converter

from queues import views
from queues.actions import PAUSE, RESUME, TASK_ACTIONS
from queues.views.pauses import pause
from queues.views.undo import undo_action
from queues.views.workers import queue_consumers, stop_worker, workers


class TaskIdConverter(converters.UUIDConverter):
    """A task's ID: any UUID but the nil one, which EntroQ reads as "none"."""

    regex = "(?!0{8}-0{4}-0{4}-0{4}-0{12})" + converters.UUIDConverter.regex


class ActionConverter:
    regex = "|".join(TASK_ACTIONS)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ActionConverter, "action")
register_converter(TaskIdConverter, "task_id")

app_name = "queues"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("go", views.go, name="go"),
    path("claims", views.claims, name="claims"),
    path("workers", workers, name="workers"),
    path("workers/consuming", queue_consumers, name="queue-consumers"),
    path("workers/<uuid:id>/stop", stop_worker, name="stop-worker"),
    path("audit", views.audit_log, name="audit"),
    path("tokens", views.api_tokens, name="tokens"),
    path("triage", views.error_triage, name="triage"),
    path("bulk", views.bulk_runs, name="bulk-runs"),
    path("bulk/plan", views.bulk_plan, name="bulk-plan"),
    path("bulk/start", views.bulk_start, name="bulk-start"),
    path("bulk/<int:pk>", views.bulk_run, name="bulk-run"),
    path("bulk/<int:pk>/cancel", views.bulk_cancel, name="bulk-cancel"),
    path("tokens/<str:key_id>/revoke", views.revoke_api_token, name="revoke-token"),
    path("pause", pause, {"action": PAUSE}, name="pause"),
    path("resume", pause, {"action": RESUME}, name="resume"),
    path("undo/<int:pk>", undo_action, name="undo"),
    # Queue names may hold slashes (``jobs/err``): the name is the rest of the path.
    path("queue/<path:name>", views.queue, name="queue"),
    path("queue", views.queue, name="queue_named"),
    path("tasks/<action:action>", views.bulk_action, name="bulk"),
    path("tasks/<task_id:id>", views.task, name="task"),
    path("tasks/<task_id:id>/value", views.task_value, name="value"),
    path("tasks/<task_id:id>/edit", views.task_edit, name="edit"),
    path("tasks/<task_id:id>/<action:action>", views.task_action, name="action"),
]
