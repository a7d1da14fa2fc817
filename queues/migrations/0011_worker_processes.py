"""Live workers' announcements and beats."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("queues", "0010_kept_deletions")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.CreateModel(
            name="WorkerProcess",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("database", "database"),
                            ("http", "HTTP API"),
                            ("django-tasks", "django.tasks"),
                        ],
                        max_length=20,
                    ),
                ),
                ("host", models.CharField(max_length=255)),
                ("pid", models.IntegerField()),
                ("version", models.CharField(max_length=50)),
                ("handler", models.CharField(blank=True, max_length=255)),
                ("queues", models.JSONField(default=list)),
                ("concurrency", models.IntegerField(default=1)),
                ("prefetch", models.IntegerField(default=0)),
                ("beat_seconds", models.FloatField(default=5.0)),
                ("started", models.DateTimeField()),
                ("last_beat", models.DateTimeField()),
                ("done", models.BigIntegerField(default=0)),
                ("failed", models.BigIntegerField(default=0)),
                ("holding", models.IntegerField(default=0)),
                ("held", models.JSONField(default=list)),
                ("stop_requested", models.DateTimeField(blank=True, null=True)),
                ("stop_requested_by", models.CharField(blank=True, max_length=150)),
                ("exited", models.DateTimeField(blank=True, null=True)),
                (
                    "token",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="queues.apitoken",
                    ),
                ),
            ],
            options={
                "db_table": "entroq_worker_process",
                "ordering": ["-started"],
                "indexes": [models.Index(fields=["last_beat"], name="entroq_worker_last_beat")],
            },
        ),
    ]
