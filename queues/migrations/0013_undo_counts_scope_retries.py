"""Undo: counts and scope on each undoable action, and retries kept for undo."""

import os.path

from django.db import migrations, models
from django.db.models import Count, Sum


def fill_counts_and_scopes(apps, schema_editor):
    """Count what each undoable action still keeps, and find the prefix of its queues
    (kept for at most a day: few rows)."""
    Undoable = apps.get_model("queues", "Undoable")
    KeptTask = apps.get_model("queues", "KeptTask")
    alias = schema_editor.connection.alias
    for undoable in Undoable.objects.using(alias).all():
        rows = KeptTask.objects.using(alias).filter(undoable=undoable)
        left = rows.filter(state="kept").aggregate(n=Count("pk"), size=Sum("size"))
        queues = {q for pair in rows.values_list("queue", "moved_to").distinct() for q in pair if q}
        undoable.left = left["n"]
        undoable.left_bytes = left["size"] or 0
        undoable.scope = os.path.commonprefix(sorted(queues)) if queues else ""
        undoable.save(update_fields=["left", "left_bytes", "scope"])


class Migration(migrations.Migration):
    dependencies = [
        ('queues', '0012_paused_queues'),
    ]

    operations = [
        migrations.AddField(
            model_name='kepttask',
            name='replaced_by',
            field=models.UUIDField(null=True),
        ),
        migrations.AddField(
            model_name='kepttask',
            name='replaced_version',
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name='undoable',
            name='forced',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='undoable',
            name='left',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='undoable',
            name='left_bytes',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='undoable',
            name='scope',
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.RunPython(fill_counts_and_scopes, migrations.RunPython.noop, elidable=True),
    ]
