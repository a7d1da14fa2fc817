"""The admin's view of tasks and the audit log: read-only, and cheap on big tables.

Changes go through the client API (``queues.entroq``), never through model saves, so
the admin offers actions that call it, each behind the dashboard's permissions.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.utils.functional import cached_property

from queues import audit
from queues.actions import PAST_TENSE, SIMPLE_ACTIONS
from queues.entroq import TaskID, ops
from queues.models import AuditEntry, Task
from queues.permissions import OPERATE
from queues.service import client


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Count at most ``CAP`` rows: an exact count of millions of tasks scans them all."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        tasks = cast(QuerySet[Any], self.object_list)
        return tasks[: self.CAP + 1].count()


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """Allow only the lookups of the filters this admin offers.

        Django allows a lookup on any field of the model by default, so that
        ``?value__contains=...`` would answer whether a value holds some bytes: one
        byte at a time, a value a viewer may not see. Anything else is the 400 Django
        answers for a disallowed lookup.
        """
        offered: set[object] = {self.date_hierarchy}
        for item in self.get_list_filter(request):
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                offered.add(item.parameter_name)
            else:
                offered.add(item[0] if isinstance(item, list | tuple) else item)
        first = lookup.split(LOOKUP_SEP, 1)[0]
        return first in offered - {None} and super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "queue", "version", "at", "claimant", "claims", "attempt", "short_err"]
    search_fields = ["=id", "^queue"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    ordering = ["queue", "at", "id"]
    actions = ["retry", "release"]
    fields = [
        "id",
        "queue",
        "version",
        "at",
        "claimant",
        "claims",
        "attempt",
        "err",
        "created",
        "modified",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        # Values can be megabytes each; lists never need them.
        return super().get_queryset(request).defer("value")

    @admin.display(description="error")
    def short_err(self, task: Task) -> str:
        return task.err[:80]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(OPERATE))

    @admin.action(permissions=["operate"], description="Retry the selected tasks")
    def retry(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._act(request, queryset, "retry")

    @admin.action(permissions=["operate"], description="Release the selected tasks")
    def release(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._act(request, queryset, "release")

    def _act(self, request: HttpRequest, queryset: QuerySet[Task], action: str) -> None:
        # The versions are those of now: the admin's list does not carry them.
        items = [TaskID(id, version) for id, version in queryset.values_list("id", "version")]
        build = SIMPLE_ACTIONS[action]
        result = ops.apply_to_versions(client(), items, build, values=action == "retry")
        audit.record(request.user, action, result, detail="from the admin")
        level = messages.SUCCESS if not result.conflicts else messages.WARNING
        self.message_user(
            request,
            f"{PAST_TENSE[action]} {len(result.done)}; {len(result.conflicts)} left alone.",
            level,
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "username", "action", "queue", "outcome", "forced"]
    list_filter = ["action", "outcome", "forced"]
    search_fields = ["username", "queue"]
    paginator = CappedCountPaginator
    show_full_result_count = False
