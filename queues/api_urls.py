from django.urls import path, re_path

from queues import api

urlpatterns = [
    path("claim", api.claim, name="api-claim"),
    path("modify", api.modify, name="api-modify"),
    path("modify/each", api.modify_each, name="api-modify-each"),
    path("tasks", api.tasks, name="api-tasks"),
    path("queues", api.queues, name="api-queues"),
    path("stats", api.stats, name="api-stats"),
    path("time", api.now, name="api-time"),
    path("whoami", api.whoami, name="api-whoami"),
    path("openapi.json", api.schema, name="api-openapi"),
    re_path(r"^(?P<rest>.*)$", api.not_found),
]
