# The column alone, in its own short transaction: on PostgreSQL a constant default
# adds it without rewriting the table, under a lock held only for that.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("queues", "0005_stats_snapshots"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="err_kind",
            field=models.TextField(blank=True, db_default="", default=""),
        ),
    ]
