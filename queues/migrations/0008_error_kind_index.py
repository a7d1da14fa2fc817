# The index triage reads. On PostgreSQL it is built CONCURRENTLY (outside a
# transaction), so claims and modifications go on while it builds.

from django.db import migrations, models

INDEX = models.Index(
    condition=models.Q(
        models.Q(("err_kind", ""), _negated=True),
        ("queue__endswith", "/err"),
        _connector="OR",
    ),
    fields=["queue", "err_kind", "modified", "id"],
    name="entroq_task_err_kind",
)


def add_index(apps, schema_editor):
    model = apps.get_model("queues", "Task")
    if schema_editor.connection.vendor == "postgresql":
        # A concurrent build that failed leaves an invalid index behind: start afresh.
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{INDEX.name}"')
        schema_editor.add_index(model, INDEX, concurrently=True)
    else:
        schema_editor.add_index(model, INDEX)


def remove_index(apps, schema_editor):
    model = apps.get_model("queues", "Task")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(model, INDEX, concurrently=True)
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("queues", "0007_fill_error_kinds"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="task", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, remove_index)],
        ),
    ]
