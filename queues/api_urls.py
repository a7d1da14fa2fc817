from django.urls import path, re_path

from queues import api, api_pauses, api_undo, api_workers

urlpatterns = [
    path("claim", api.claim, name="api-claim"),
    path("modify", api.modify, name="api-modify"),
    path("modify/each", api.modify_each, name="api-modify-each"),
    path("tasks", api.tasks, name="api-tasks"),
    path("queues", api.queues, name="api-queues"),
    path("stats", api.stats, name="api-stats"),
    path("time", api.now, name="api-time"),
    path("whoami", api.whoami, name="api-whoami"),
    path("pause", api_pauses.pause, name="api-pause"),
    path("resume", api_pauses.resume, name="api-resume"),
    path("paused", api_pauses.paused, name="api-paused"),
    path("undoable", api_undo.undoable, name="api-undoable"),
    path("undo", api_undo.undo_action, name="api-undo"),
    path("openapi.json", api.schema, name="api-openapi"),
    path("workers", api_workers.workers, name="api-workers"),
    path("workers/beat", api_workers.beat, name="api-worker-beat"),
    path("workers/stop", api_workers.stop, name="api-worker-stop"),
    re_path(r"^(?P<rest>.*)$", api.not_found),
]
