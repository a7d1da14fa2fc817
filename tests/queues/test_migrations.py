"""Data migrations on tables that already hold tasks."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE_KINDS = [("queues", "0005_stats_snapshots")]


@pytest.mark.django_db(transaction=True)
def test_existing_failures_get_their_error_kind() -> None:
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("queues")
    executor.migrate(BEFORE_KINDS)
    try:
        Task = executor.loader.project_state(BEFORE_KINDS).apps.get_model("queues", "Task")
        now = timezone.now()
        errors = [f"card {n} declined" for n in range(10_000, 15_500)] + ["", "HTTP 503"]
        Task.objects.bulk_create(
            Task(id=uuid.uuid4(), queue="q/err", at=now, created=now, modified=now, err=err)
            for err in errors
        )

        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)

    from queues.models import Task as Current

    kinds = sorted(Current.objects.values_list("err_kind", flat=True).distinct())
    assert kinds == ["", "HTTP 503", "card <n> declined"]
    assert Current.objects.filter(err_kind="card <n> declined").count() == 5500


BEFORE_COUNTS = [("queues", "0012_paused_queues")]


@pytest.mark.django_db(transaction=True)
def test_kept_actions_get_their_counts_and_scope() -> None:
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("queues")
    executor.migrate(BEFORE_COUNTS)
    try:
        apps = executor.loader.project_state(BEFORE_COUNTS).apps
        Undoable, KeptTask = (
            apps.get_model("queues", "Undoable"),
            apps.get_model("queues", "KeptTask"),
        )
        deleted = Undoable.objects.create(username="ops", action="delete")
        moved = Undoable.objects.create(username="ops", action="move")
        KeptTask.objects.bulk_create(
            [
                KeptTask(undoable=deleted, task_id=uuid.uuid4(), queue="billing/a", size=5),
                KeptTask(undoable=deleted, task_id=uuid.uuid4(), queue="billing/b", size=3),
                KeptTask(
                    undoable=deleted, task_id=uuid.uuid4(), queue="mail", size=9, state="restored"
                ),
                KeptTask(undoable=moved, task_id=uuid.uuid4(), queue="jobs/a", moved_to="jobs/b"),
            ]
        )

        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)

    from queues.models import Undoable as Current

    found = {u.action: (u.left, u.left_bytes, u.scope) for u in Current.objects.all()}
    assert found == {"delete": (2, 8, ""), "move": (1, 0, "jobs/")}
