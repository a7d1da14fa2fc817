"""The audit log: every operator action, who took it, and what came of it."""

from __future__ import annotations

import getpass
import os

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from queues.entroq import TaskID
from queues.entroq.ops import BulkResult
from queues.entroq.tasks import MAX_QUEUE_LENGTH
from queues.models import ApiToken, AuditEntry


def record(
    user: AbstractBaseUser | AnonymousUser,
    action: str,
    result: BulkResult,
    *,
    queue: str = "",
    target: str = "",
    forced: bool = False,
    detail: str = "",
    username: str = "",
) -> AuditEntry:
    """Write an entry for ``action`` on the tasks of ``result`` and return it.

    ``username`` names who acted when no user did (``manage.py eq``).
    """
    tasks = [_entry(task, True, "") for task in result.done] + [
        _entry(task, False, why) for task, why in result.conflicts
    ]
    if result.done and result.conflicts:
        outcome = AuditEntry.Outcome.PARTIAL
    elif result.done or not tasks:
        outcome = AuditEntry.Outcome.DONE
    else:
        outcome = AuditEntry.Outcome.CONFLICT
    return AuditEntry.objects.create(
        user_id=user.pk if user.is_authenticated else None,
        username=username or user.get_username(),
        action=action,
        queue=(queue or ", ".join(sorted(result.queues)))[:MAX_QUEUE_LENGTH],
        target=target,
        forced=forced,
        outcome=outcome,
        tasks=tasks,
        detail=detail,
    )


def refused(
    user: AbstractBaseUser | AnonymousUser, action: str, items: list[TaskID], why: str
) -> AuditEntry:
    """Write an entry for an action that was refused before it touched any task."""
    return _unfinished(user, action, items, why, AuditEntry.Outcome.REFUSED)


def failed(
    user: AbstractBaseUser | AnonymousUser, action: str, items: list[TaskID], why: str
) -> AuditEntry:
    """Write an entry for an action that broke off with an error (some chunks may be done)."""
    return _unfinished(user, action, items, why, AuditEntry.Outcome.FAILED)


def _unfinished(
    user: AbstractBaseUser | AnonymousUser,
    action: str,
    items: list[TaskID],
    why: str,
    outcome: str,
) -> AuditEntry:
    return AuditEntry.objects.create(
        user_id=user.pk if user.is_authenticated else None,
        username=user.get_username(),
        action=action,
        outcome=outcome,
        tasks=[_entry(item, False, why) for item in items],
        detail=why,
    )


def _entry(task: TaskID, done: bool, detail: str) -> dict[str, object]:
    return {"id": str(task.id), "version": task.version, "done": done, "detail": detail}


def token(user: AbstractBaseUser | AnonymousUser, action: str, api_token: ApiToken) -> AuditEntry:
    """Write an entry for creating or revoking an API token."""
    return AuditEntry.objects.create(
        user_id=user.pk if user.is_authenticated else None,
        username=user.get_username(),
        action=action,
        outcome=AuditEntry.Outcome.DONE,
        detail=f"{api_token.name} ({api_token.key_id}…) of {api_token.user.get_username()}: "
        + " ".join(f"{g['prefix']}={','.join(g['actions'])}" for g in api_token.grants),
    )


def command_line_user() -> str:
    """Return the name the audit log gives ``manage.py eq``'s actions: the system user's."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this user ID (a container)
        who = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{who} (manage.py eq)"[:150]
