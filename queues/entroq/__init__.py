"""EntroQ's client API: ``from queues import entroq``.

Importing this module needs no Django settings; only ``DjangoBackend`` (and
``EntroQ()`` without a backend, which uses it) needs the ``queues`` app configured.
"""

from typing import TYPE_CHECKING

from .backend import (
    DEFAULT_CLAIM_DURATION,
    DEFAULT_CLAIM_POLL_TIME,
    MAX_CLAIM,
    Backend,
    ClaimQuery,
    ModifyOutcome,
    Notifier,
    QueuesQuery,
    TasksQuery,
)
from .client import EntroQ
from .errors import (
    BackendUnavailable,
    ClaimTimeout,
    DependencyError,
    ErrorTaskValue,
    MoveTaskError,
    RetryTaskError,
    default_err_qmap,
)
from .memory import MemoryBackend
from .modify import (
    Modification,
    ModifyArg,
    TaskChange,
    changing,
    deleting,
    depending_on,
    inserting,
    inserting_into,
    new_modification,
    with_modification,
)
from .pauses import Pause
from .prefetch import Acks, Prefetcher
from .tasks import (
    DEFAULT_MAX_VALUE_BYTES,
    MAX_QUEUE_LENGTH,
    QueueStat,
    Task,
    TaskData,
    TaskID,
)
from .worker import Worker

if TYPE_CHECKING:
    from .django_backend import DjangoBackend
    from .http_backend import HTTPBackend


def __getattr__(name: str) -> object:
    # DjangoBackend imports django.db and HTTPBackend urllib3: load them on first use.
    if name == "DjangoBackend":
        from .django_backend import DjangoBackend

        return DjangoBackend
    if name == "HTTPBackend":
        from .http_backend import HTTPBackend

        return HTTPBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CLAIM_DURATION",
    "DEFAULT_CLAIM_POLL_TIME",
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_CLAIM",
    "MAX_QUEUE_LENGTH",
    "Acks",
    "Backend",
    "BackendUnavailable",
    "ClaimQuery",
    "ClaimTimeout",
    "DependencyError",
    "DjangoBackend",
    "EntroQ",
    "ErrorTaskValue",
    "HTTPBackend",
    "MemoryBackend",
    "Modification",
    "ModifyArg",
    "ModifyOutcome",
    "MoveTaskError",
    "Notifier",
    "Pause",
    "Prefetcher",
    "QueueStat",
    "QueuesQuery",
    "RetryTaskError",
    "Task",
    "TaskChange",
    "TaskData",
    "TaskID",
    "TasksQuery",
    "Worker",
    "changing",
    "default_err_qmap",
    "deleting",
    "depending_on",
    "inserting",
    "inserting_into",
    "new_modification",
    "with_modification",
]
