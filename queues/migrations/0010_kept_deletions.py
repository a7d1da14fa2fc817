"""Deletions kept for undo (queues.undo)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("queues", "0009_departures"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Undoable",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("username", models.CharField(max_length=150)),
                ("action", models.CharField(max_length=20)),
                ("undone", models.DateTimeField(null=True)),
                ("undone_by", models.CharField(blank=True, max_length=150)),
                (
                    "entry",
                    models.OneToOneField(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="undo",
                        to="queues.auditentry",
                    ),
                ),
                (
                    "run",
                    models.OneToOneField(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="undo",
                        to="queues.bulkrun",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-id"]},
        ),
        migrations.CreateModel(
            name="KeptTask",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("task_id", models.UUIDField()),
                ("queue", models.CharField(max_length=500)),
                ("version", models.IntegerField(default=0)),
                ("moved_to", models.CharField(blank=True, max_length=500)),
                ("value", models.BinaryField(default=b"")),
                ("size", models.BigIntegerField(default=0)),
                ("attempt", models.IntegerField(default=0)),
                ("err", models.TextField(blank=True)),
                ("claims", models.IntegerField(default=0)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("kept", "kept"),
                            ("restored", "put back"),
                            ("conflict", "conflict"),
                        ],
                        default="kept",
                        max_length=10,
                    ),
                ),
                ("detail", models.TextField(blank=True)),
                (
                    "undoable",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tasks",
                        to="queues.undoable",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["undoable", "state"], name="entroq_kept_undoable_state")
                ]
            },
        ),
    ]
