"""Paused queues and prefixes."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("queues", "0011_worker_processes")]

    operations: list[migrations.operations.base.Operation] = []
