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
