# Gives every failed task its error kind, committing a chunk at a time (the migration
# is not atomic), so workers go on meanwhile. Stop processes of older versions first:
# a task they fail afterwards keeps an empty kind.

from collections import defaultdict

from django.db import migrations

from queues.entroq.kinds import error_kind

CHUNK = 5000


def fill_error_kinds(apps, schema_editor):
    """Give each failed task the kind of its error, a chunk of IDs at a time."""
    Task = apps.get_model("queues", "Task")
    rows = Task.objects.using(schema_editor.connection.alias).exclude(err="").order_by("id")
    last = None
    while True:
        chunk = rows.filter(id__gt=last) if last is not None else rows
        found = list(chunk.values_list("id", "err")[:CHUNK])
        if not found:
            return
        by_kind = defaultdict(list)
        for id, err in found:
            by_kind[error_kind(err)].append(id)
        for kind, ids in by_kind.items():
            rows.filter(id__in=ids).update(err_kind=kind)
        last = found[-1][0]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("queues", "0006_task_err_kind"),
    ]

    operations = [
        migrations.RunPython(fill_error_kinds, migrations.RunPython.noop, elidable=True),
    ]
