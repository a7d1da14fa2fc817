"""``EntroQBackend``: Django's ``django.tasks`` stored and run as EntroQ tasks.

Configure it in ``settings.TASKS``::

    TASKS = {"default": {"BACKEND": "queues.tasks_backend.EntroQBackend"}}

and run workers with ``manage.py eqworker --django-tasks``. A ``@task`` call becomes
an EntroQ task in ``django-tasks/<queue_name>`` whose value is JSON naming the
function and its arguments; the result ID is the EntroQ task ID. A worker runs it
and moves it, with its ID, to ``…/done`` or ``…/err`` with the outcome, so results
can be read from any process until pruned (``manage.py eq prune``). With ``QUEUES``
empty (any queue name), a worker serves every queue under the prefix: a claim over a
prefix leaves out ``…/done`` and ``…/err``, so queue names may not end so. OPTIONS:
``QUEUE_PREFIX`` (default ``"django-tasks/"``) and ``DATABASE`` (default
``"default"``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from traceback import format_exception
from typing import Any, ParamSpec, TypeVar

from django.tasks import Task as DjangoTask
from django.tasks import TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from queues import entroq
from queues.conf import AppSettings, app_settings
from queues.entroq.errors import ERROR_SUFFIX
from queues.entroq.pauses import DONE_SUFFIX, EVERY_QUEUE, is_outcome
from queues.entroq.tasks import parse_json

DONE, ERR = DONE_SUFFIX, ERROR_SUFFIX

_P = ParamSpec("_P")
_R = TypeVar("_R")


class EntroQBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.prefix: str = self.options.get("QUEUE_PREFIX", "django-tasks/")
        self.database: str = self.options.get("DATABASE", "default")
        self._shared: tuple[AppSettings, entroq.EntroQ] | None = None

    def client(self) -> entroq.EntroQ:
        """Return a new client on the backend's database (each worker thread has one)."""
        return entroq.EntroQ(entroq.DjangoBackend(self.database))

    def shared_client(self) -> entroq.EntroQ:
        """Return the one client that enqueues and reads results for this backend.

        Every thread shares it: a client holds only a claimant ID, and its backend
        runs on each thread's own connection and keeps each thread's prepared
        cursor. A new one is made when ``settings.ENTROQ`` changes (its value limit).
        """
        conf = app_settings()
        shared = self._shared
        if shared is None or shared[0] is not conf:
            shared = self._shared = (conf, self.client())
        return shared[1]

    def queue_for(self, queue_name: str) -> str:
        """Return the EntroQ queue of the Django task queue ``queue_name``."""
        return self.prefix + queue_name

    def served_queues(self) -> list[str]:
        """Return the EntroQ queues a worker serves: those of ``QUEUES``, or, with
        ``QUEUES`` empty (any name), every queue under the prefix.

        Raise ``ValueError`` if the prefix does not end with ``/`` then: claims over a
        prefix take whole path segments (``billing/*``), and an empty prefix would be
        every queue of the store, other applications' included.
        """
        if self.queues:
            return [self.queue_for(name) for name in sorted(self.queues)]
        if not self.prefix.endswith("/"):
            raise ValueError(
                f"QUEUE_PREFIX {self.prefix!r} does not end with '/': give QUEUES, "
                "or a prefix that does, to serve any queue name"
            )
        return [self.prefix + EVERY_QUEUE]  # "django-tasks/*"

    def validate_task(self, task: DjangoTask[..., Any]) -> None:
        super().validate_task(task)
        if is_outcome(self.queue_for(task.queue_name)):
            # It would read as the results of another queue, and no worker serving
            # the prefix would claim it.
            raise InvalidTask(f"Queue {task.queue_name!r} ends like a queue of results.")

    # Enqueueing and results (any process).

    def enqueue(
        self, task: DjangoTask[_P, _R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[_P, _R]:
        """Store the call; inside a transaction it is enqueued only if that commits."""
        self.validate_task(task)
        payload = {
            "task": task.module_path,
            "args": normalize_json(list(args)),
            "kwargs": normalize_json(dict(kwargs)),
        }
        client = self.shared_client()
        # One insert: one statement (see ``DjangoBackend.modify``). Inside the caller's
        # transaction it is part of it: undone by its rollback, seen by others at commit.
        [stored], _ = client.backend.modify(
            entroq.Modification(
                claimant=client.id,
                inserts=[
                    entroq.TaskData(
                        queue=self.queue_for(task.queue_name),
                        value=json.dumps(payload).encode(),
                        at=task.run_after,
                    )
                ],
            )
        )
        result = self._result(task, stored, payload, TaskResultStatus.READY)
        task_enqueued.send(type(self), task_result=result)
        return result  # type: ignore[return-value]  # _result is not generic

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        try:
            task_id = uuid.UUID(result_id)
            [stored] = self.shared_client().tasks(ids=[task_id])
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        if not stored.queue.startswith(self.prefix):
            raise TaskResultDoesNotExist(result_id)
        try:
            payload = parse_json(stored.value)
            task = import_string(payload["task"])
        except (ValueError, KeyError, TypeError, ImportError) as error:
            raise TaskResultDoesNotExist(f"{result_id}: not a task result ({error})") from error
        now = datetime.now(tz=stored.at.tzinfo)
        if stored.queue.endswith(DONE):
            status = TaskResultStatus.SUCCESSFUL
        elif stored.queue.endswith(ERR):
            status = TaskResultStatus.FAILED
        elif stored.claims and stored.claimant is not None and stored.at > now:
            status = TaskResultStatus.RUNNING
        else:
            # Not started, deferred, or its worker died and the lease lapsed: it will run.
            status = TaskResultStatus.READY
        return self._result(task, stored, payload, status)

    def _result(
        self,
        task: DjangoTask[..., Any],
        stored: entroq.Task,
        payload: dict[str, Any],
        status: TaskResultStatus,
    ) -> TaskResult[..., Any]:
        running = status == TaskResultStatus.RUNNING
        started = _time(payload.get("started_at")) or (stored.modified if running else None)
        result: TaskResult[..., Any] = TaskResult(
            task=task,
            id=str(stored.id),
            status=status,
            enqueued_at=stored.created,
            started_at=started,
            finished_at=_time(payload.get("finished_at")),
            last_attempted_at=started,
            args=payload["args"],
            kwargs=payload["kwargs"],
            backend=self.alias,
            errors=[TaskError(**error) for error in payload.get("errors", [])],
            worker_ids=payload.get("worker_ids") or ([str(stored.claimant)] if running else []),
        )
        object.__setattr__(result, "_return_value", payload.get("return_value"))
        return result

    # Running (in eqworker --django-tasks).

    def run(self, stored: entroq.Task) -> list[entroq.ModifyArg]:
        """Run the task call in ``stored`` and return the move that records the outcome."""
        try:
            payload = parse_json(stored.value)
            task = import_string(payload["task"])
            if not isinstance(task, DjangoTask):
                raise TypeError(f"{payload['task']} is not a task")
        except (ValueError, KeyError, TypeError, ImportError) as error:
            # A removed or renamed task function, or a damaged value: a failure to keep,
            # not a reason to stop the worker (it would come back to every worker).
            return [stored.as_change(queue=stored.queue + ERR, err=f"cannot run: {error}")]
        started = datetime.now(tz=stored.at.tzinfo)
        payload.update(started_at=started.isoformat(), worker_ids=[str(stored.claimant)])
        result = self._result(task, stored, payload, TaskResultStatus.RUNNING)
        task_started.send(type(self), task_result=result)
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
            else:
                value = task.call(*result.args, **result.kwargs)
            payload["return_value"] = normalize_json(value)
            payload["finished_at"] = datetime.now(tz=stored.at.tzinfo).isoformat()
            encoded = json.dumps(payload).encode()
            if len(encoded) > app_settings().MAX_VALUE_BYTES:  # refuse what cannot be stored
                raise ValueError(f"the result of {len(encoded)} bytes is over the value limit")
            status, queue = TaskResultStatus.SUCCESSFUL, stored.queue + DONE
        except Exception as error:  # the task's failure is its result
            kind = type(error)
            payload.pop("return_value", None)
            payload["errors"] = [
                {
                    "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
                    "traceback": "".join(format_exception(error)),
                }
            ]
            status, queue = TaskResultStatus.FAILED, stored.queue + ERR
            payload["finished_at"] = datetime.now(tz=stored.at.tzinfo).isoformat()
            encoded = json.dumps(payload).encode()
        task_finished.send(type(self), task_result=self._result(task, stored, payload, status))
        return [stored.as_change(queue=queue, value=encoded)]


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
