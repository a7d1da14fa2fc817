"""The task table. Only ``queues.entroq.DjangoBackend`` writes it; everything else reads."""

from django.db import models

from queues.entroq.django_backend import TASK_TABLE
from queues.entroq.tasks import MAX_QUEUE_LENGTH


class Task(models.Model):
    """One EntroQ task (see ``queues.entroq.Task`` for the meaning of each field)."""

    id = models.UUIDField(primary_key=True)
    queue = models.CharField(max_length=MAX_QUEUE_LENGTH)
    version = models.IntegerField(default=0)
    at = models.DateTimeField()
    claimant = models.UUIDField(null=True, blank=True)
    claims = models.IntegerField(default=0)
    value = models.BinaryField(default=b"")
    created = models.DateTimeField()
    modified = models.DateTimeField()
    attempt = models.IntegerField(default=0)
    err = models.TextField(default="", blank=True)

    class Meta:
        db_table = TASK_TABLE
        # One secondary index: every claim rewrites ``at``, so each index on it costs
        # write-ahead log per claim. (queue, at) finds the oldest available tasks of a
        # queue, gives each queue's next arrival, and with ``id`` pages listings stably.
        indexes = [models.Index(fields=["queue", "at", "id"], name="entroq_task_queue_at_id")]

    def __str__(self) -> str:
        return f"{self.id}:{self.version} in {self.queue}"
