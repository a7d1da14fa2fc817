"""The task table, which only ``queues.entroq.DjangoBackend`` writes, and the audit log."""

from typing import Any, NoReturn

from django.conf import settings
from django.db import NotSupportedError, models
from django.utils import timezone

from queues.entroq.departures import DEPARTURES_TABLE
from queues.entroq.django_backend.sql import PAUSED_TABLE, TASK_TABLE
from queues.entroq.errors import ERROR_SUFFIX
from queues.entroq.tasks import MAX_QUEUE_LENGTH

# The tasks error triage reads: those with an error, and every task of an error queue.
TRIAGED = ~models.Q(err_kind="") | models.Q(queue__endswith=ERROR_SUFFIX)


def _refuse_write(model: str) -> NoReturn:
    raise NotSupportedError(
        f"{model} rows are written only by queues.entroq.DjangoBackend: a write through the "
        "ORM would skip version checks, leases and waiting workers' notifications. Use "
        "the client API (queues.service.client() or queues.entroq.EntroQ)."
    )


class TaskQuerySet(models.QuerySet["Task"]):
    """Tasks for reading: every write the ORM offers is refused (see ``_refuse_write``)."""

    def create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def get_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")


class Task(models.Model):
    """One EntroQ task (see ``queues.entroq.Task`` for the meaning of each field).

    Read it through the ORM freely; change it only through the client API, which
    refuses nothing the ORM would let slip (saves and deletes here raise).
    """

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
    # ``queues.entroq.kinds.error_kind(err)``, kept by the backend for error triage.
    err_kind = models.TextField(default="", db_default="", blank=True)

    # Not used in migrations, whose data migrations write tasks as plain rows.
    objects = TaskQuerySet.as_manager()

    class Meta:
        db_table = TASK_TABLE
        # Every claim rewrites ``at``, so each index on it costs write-ahead log per
        # claim. (queue, at) finds the oldest available tasks of a queue, gives each
        # queue's next arrival, and with ``id`` pages listings stably. The error kind
        # index holds only the tasks triage reads, so claims of healthy tasks in
        # healthy queues never touch it.
        indexes = [
            models.Index(fields=["queue", "at", "id"], name="entroq_task_queue_at_id"),
            models.Index(
                fields=["queue", "err_kind", "modified", "id"],
                name="entroq_task_err_kind",
                condition=TRIAGED,
            ),
        ]
        # Roles beyond Django's view_task (stats and metadata): values can hold personal
        # data, and acting on a task another worker holds can break that worker's run.
        permissions = [
            ("view_task_value", "Can see task values"),
            ("operate_task", "Can retry, release, move, edit and delete tasks"),
            ("force_task", "Can act on tasks that another claimant holds"),
        ]

    def __str__(self) -> str:
        return f"{self.id}:{self.version} in {self.queue}"

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_write("Task")


class Departures(models.Model):
    """How many tasks left a queue (deleted, or moved elsewhere) in one minute.

    Written only by ``queues.entroq.DjangoBackend`` (see ``queues.entroq.departures``).
    """

    queue = models.CharField(max_length=MAX_QUEUE_LENGTH)
    minute = models.DateTimeField()
    count = models.BigIntegerField()

    class Meta:
        db_table = DEPARTURES_TABLE
        verbose_name_plural = "departures"
        constraints = [
            models.UniqueConstraint(fields=["queue", "minute"], name="entroq_departures_minute")
        ]
        indexes = [models.Index(fields=["minute"], name="entroq_departures_pruned")]

    def __str__(self) -> str:
        return f"{self.count} left {self.queue} at {self.minute:%Y-%m-%d %H:%M}"


class PausedQueue(models.Model):
    """A pause: claims skip the queue ``name``, or every queue under it when ``prefix``.

    Written only by ``queues.entroq.DjangoBackend`` (see ``queues.entroq.pauses``).
    """

    name = models.CharField(max_length=MAX_QUEUE_LENGTH, blank=True)
    prefix = models.BooleanField(default=False)
    paused_at = models.DateTimeField()

    class Meta:
        db_table = PAUSED_TABLE
        constraints = [
            models.UniqueConstraint(fields=["name", "prefix"], name="entroq_paused_once")
        ]

    def __str__(self) -> str:
        return f"{self.name}*" if self.prefix else self.name


class AuditEntry(models.Model):
    """One operator action from the dashboard or the admin, and what came of it."""

    class Outcome(models.TextChoices):
        DONE = "done", "done"
        PARTIAL = "partial", "partly done"
        CONFLICT = "conflict", "conflict"
        REFUSED = "refused", "refused"
        FAILED = "failed", "failed"

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the log still names who acted after the account is gone.
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=20)
    queue = models.CharField(max_length=MAX_QUEUE_LENGTH, blank=True)
    # The destination of a move.
    target = models.CharField(max_length=MAX_QUEUE_LENGTH, blank=True)
    forced = models.BooleanField(default=False)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    # [{"id": ..., "version": ..., "done": bool, "detail": ...}] for each task acted on.
    tasks = models.JSONField(default=list)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["at"], name="entroq_audit_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} ({self.outcome})"


class ApiToken(models.Model):
    """A credential for the HTTP API: a user's, limited to actions on queue prefixes.

    Only a hash of the secret is kept; the token's claimant ID is the one its requests
    claim and modify as, so one worker cannot act as another by naming its claimant.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entroq_tokens"
    )
    name = models.CharField(max_length=100)
    # The public start of the token, to find it; the rest is secret.
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    claimant = models.UUIDField(unique=True)
    # [{"prefix": "billing/", "actions": ["claim", "delete"]}, ...]
    grants = models.JSONField(default=list)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id}…) of {self.user}"


class WorkerProcess(models.Model):
    """One ``eqworker`` process as it last announced itself (see ``queues.liveness``).

    Not a task: its own process writes it, one small update every few seconds (its
    beat), and the dashboard reads it. An operator's stop request waits here until
    the next beat carries it to the process.
    """

    class Kind(models.TextChoices):
        DATABASE = "database", "database"
        HTTP = "http", "HTTP API"
        DJANGO_TASKS = "django-tasks", "django.tasks"

    # Chosen by the process when it starts.
    id = models.UUIDField(primary_key=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    version = models.CharField(max_length=50)
    handler = models.CharField(max_length=255, blank=True)
    # The queue names it claims from.
    queues = models.JSONField(default=list)
    concurrency = models.IntegerField(default=1)
    prefetch = models.IntegerField(default=0)
    # Seconds between its beats, so that staleness is judged by its own rhythm.
    beat_seconds = models.FloatField(default=5.0)
    started = models.DateTimeField()
    last_beat = models.DateTimeField()
    done = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    # How many tasks it holds, and the IDs of the first of them (capped).
    holding = models.IntegerField(default=0)
    held = models.JSONField(default=list)
    # The token a worker over HTTP beats with: only that token may beat for it.
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stop_requested = models.DateTimeField(null=True, blank=True)
    stop_requested_by = models.CharField(max_length=150, blank=True)
    # When it said goodbye: it stopped on its own, not a stale row.
    exited = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "entroq_worker_process"
        ordering = ["-started"]
        indexes = [models.Index(fields=["last_beat"], name="entroq_worker_last_beat")]

    def __str__(self) -> str:
        return f"{self.kind} worker {self.host}:{self.pid} ({self.id})"


class BulkRun(models.Model):
    """An action on every task of a queue that matched a filter, run in the background.

    The IDs of the tasks in scope are taken when the run starts: tasks that arrive
    later are left alone, and no task is acted on twice. A worker runs it in chunks
    (``queues.bulk``), saving its ``position`` after each, so a run survives the crash
    of the process running it: the task that carries it is redelivered and the next
    worker goes on from there.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"
        CANCELLED = "cancelled", "cancelled"
        FAILED = "failed", "failed"

    created = models.DateTimeField(default=timezone.now)
    # When a worker last saved progress (or the run was created).
    updated = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=20)
    queue = models.CharField(max_length=MAX_QUEUE_LENGTH)
    # {"state": ..., "min_attempt": ..., "error_group": ...}: the filters that chose.
    filters = models.JSONField(default=dict)
    target = models.CharField(max_length=MAX_QUEUE_LENGTH, blank=True)
    # The hex IDs of the tasks in scope at the start, in (at, id) order.
    ids = models.JSONField(default=list)
    # How many of ``ids`` the run has been through.
    position = models.IntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    total = models.IntegerField(default=0)
    done = models.IntegerField(default=0)
    conflicts = models.IntegerField(default=0)
    # Tasks gone, or moved out of the queue, before the run reached them.
    gone = models.IntegerField(default=0)
    # The first conflicts, to show: [{"id": ..., "version": ..., "detail": ...}].
    conflict_sample = models.JSONField(default=list)
    # A digest of the queue and filters: one running run per scope at a time.
    scope = models.CharField(max_length=64)
    finished = models.DateTimeField(null=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope"],
                condition=models.Q(status="running"),
                name="entroq_one_bulk_run_per_scope",
            )
        ]

    def __str__(self) -> str:
        return f"bulk {self.action} #{self.pk} on {self.queue} ({self.status})"


class StatsSnapshot(models.Model):
    """Every queue's stats at one moment, shared by every viewer of the dashboard.

    Taken at most once per ``slot`` (the refresh period); ``kept`` snapshots, one
    every few minutes, stay for the charts, the others are pruned soon.
    """

    taken = models.DateTimeField(db_index=True)
    # The refresh period this snapshot belongs to: one snapshot a period, whoever asks.
    slot = models.BigIntegerField(unique=True)
    kept = models.BooleanField(default=False)
    # {queue: [size, available, claimed, future, max_claims, earliest or null]}; null
    # while the request that claimed the slot computes them.
    stats = models.JSONField(null=True)

    class Meta:
        ordering = ["-taken"]

    def __str__(self) -> str:
        return f"stats of {len(self.stats or {})} queues at {self.taken:%H:%M:%S}"


class Undoable(models.Model):
    """An operator's delete or move, with what it changed kept so that it can be undone.

    Kept for ``KEEP_DELETED_SECONDS`` (see ``queues.undo``); workers' own deletions are
    never kept.
    """

    created = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    # "delete", "move" or "retry".
    action = models.CharField(max_length=20)
    # Whether it acted on tasks that others held: undoing it needs the force permission.
    forced = models.BooleanField(default=False)
    # The longest prefix of every queue it touched (deleted from, moved from or to): a
    # token may undo it only with a grant over all of it.
    scope = models.CharField(max_length=MAX_QUEUE_LENGTH, blank=True)
    # How many of its tasks are still kept to put back, and their values' bytes (kept
    # here so that summaries never count the kept rows).
    left = models.BigIntegerField(default=0)
    left_bytes = models.BigIntegerField(default=0)
    # The audit entry that offers the undo (of a bulk run, the entry of its end).
    entry = models.OneToOneField(
        AuditEntry, null=True, on_delete=models.SET_NULL, related_name="undo"
    )
    run = models.OneToOneField(BulkRun, null=True, on_delete=models.SET_NULL, related_name="undo")
    # The last undo of it, and who asked (an undo may restore in several goes).
    undone = models.DateTimeField(null=True)
    undone_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"undoable {self.action} #{self.pk} by {self.username}"


class KeptTask(models.Model):
    """A task an operator deleted, kept whole, or moved: its ID, version and former queue.

    Written with the ORM as the operator's deletion or move is made through the client
    API, in the same transaction; put back only through the client API.
    """

    class State(models.TextChoices):
        KEPT = "kept", "kept"
        RESTORED = "restored", "put back"
        CONFLICT = "conflict", "conflict"

    undoable = models.ForeignKey(Undoable, on_delete=models.CASCADE, related_name="tasks")
    task_id = models.UUIDField()
    # Where it was: the queue it was deleted or moved from.
    queue = models.CharField(max_length=MAX_QUEUE_LENGTH)
    # Of a deletion, the version deleted; of a move, the version the move made, which
    # an undo must still find.
    version = models.IntegerField(default=0)
    # The destination of a move, or of a retry's task; "" for a deletion.
    moved_to = models.CharField(max_length=MAX_QUEUE_LENGTH, blank=True)
    # Of a retry: the task that replaced this error-queue task (kept like a deletion),
    # at the version the retry inserted, which an undo must still find.
    replaced_by = models.UUIDField(null=True)
    replaced_version = models.IntegerField(default=0)
    value = models.BinaryField(default=b"")
    size = models.BigIntegerField(default=0)
    attempt = models.IntegerField(default=0)
    err = models.TextField(blank=True)
    claims = models.IntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.KEPT)
    # Why an undo could not put it back.
    detail = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["undoable", "state"], name="entroq_kept_undoable_state")]

    def __str__(self) -> str:
        return f"{self.task_id} from {self.queue} ({self.state})"
