"""Deletions kept for undo (queues.undo)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("queues", "0009_departures")]

    operations: list[migrations.operations.base.Operation] = []
