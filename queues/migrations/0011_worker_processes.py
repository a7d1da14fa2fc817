"""Live workers' announcements and beats."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("queues", "0010_kept_deletions")]

    operations: list[migrations.operations.base.Operation] = []
