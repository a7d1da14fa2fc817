"""Paused queues and prefixes."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("queues", "0011_worker_processes")]

    operations = [
        migrations.CreateModel(
            name="PausedQueue",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(blank=True, max_length=500)),
                ("prefix", models.BooleanField(default=False)),
                ("paused_at", models.DateTimeField()),
            ],
            options={
                "db_table": "entroq_paused",
                "constraints": [
                    models.UniqueConstraint(fields=("name", "prefix"), name="entroq_paused_once")
                ],
            },
        ),
    ]
