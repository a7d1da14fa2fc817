"""The task table refuses writes that do not go through the client API."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.db import NotSupportedError
from django.utils import timezone

from queues.entroq import EntroQ, inserting_into
from queues.models import Task


def test_the_orm_reads_tasks_but_refuses_to_write_them(dash: EntroQ) -> None:
    inserted = dash.modify(inserting_into("q", value=b"kept"))[0][0]
    row = Task.objects.get(id=inserted.id)
    assert (row.queue, bytes(row.value), row.version) == ("q", b"kept", inserted.version)

    now = timezone.now()
    writes: dict[str, Callable[[], object]] = {
        "save": lambda: row.save(),
        "delete": lambda: row.delete(),
        "queryset delete": lambda: Task.objects.filter(queue="q").delete(),
        "update": lambda: Task.objects.filter(queue="q").update(queue="elsewhere"),
        "create": lambda: Task.objects.create(
            id=uuid.uuid4(), queue="q", at=now, created=now, modified=now
        ),
        "bulk_create": lambda: Task.objects.bulk_create([Task(id=uuid.uuid4(), queue="q")]),
        "bulk_update": lambda: Task.objects.bulk_update([row], ["queue"]),
        "get_or_create": lambda: Task.objects.get_or_create(id=uuid.uuid4(), queue="q"),
        "update_or_create": lambda: Task.objects.update_or_create(id=row.id),
    }
    for name, write in writes.items():
        with pytest.raises(NotSupportedError, match="client API"):
            write()
        assert [(t.id, t.version, t.queue) for t in dash.tasks("q")] == [
            (inserted.id, inserted.version, "q")
        ], name
