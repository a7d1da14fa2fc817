"""What an operator does to tasks, and how it is said: the dashboard's and the admin's.

Each action is a name, what it does to one task (``queues.entroq.ops``), and its
wording in messages and in the audit log, as ``django.contrib.admin.actions`` keeps
the admin's ``delete_selected`` apart from its views.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.contrib import messages

from queues.entroq import ModifyArg, Task, ops

# The actions on tasks that a page or a form names (``/tasks/<action>``).
TASK_ACTIONS = ("retry", "release", "move", "delete")
# Those that need nothing but the task; a move needs a target, an edit a value.
SIMPLE_ACTIONS: dict[str, Callable[[Task], Sequence[ModifyArg]]] = {
    "retry": ops.retry,
    "release": ops.release,
    "delete": ops.delete,
}
PAST_TENSE = {
    "retry": "Retried",
    "release": "Released",
    "delete": "Deleted",
    "move": "Moved",
    "edit": "Saved",
}
CREATE_TOKEN = "create token"
REVOKE_TOKEN = "revoke token"
# Every action the audit log records (and the audit page filters by).
PAUSE = "pause"
RESUME = "resume"
UNDO = "undo"
AUDITED_ACTIONS = [*PAST_TENSE, CREATE_TOKEN, REVOKE_TOKEN, PAUSE, RESUME, UNDO]


def outcome(action: str, result: ops.BulkResult, target: str = "") -> tuple[int, str]:
    """Return the message level and text that say what came of ``action``: what was
    done, and the first few tasks left alone and why."""
    done = len(result.done)
    noun = "task" if done == 1 else "tasks"
    where = f" to {target}" if target else ""
    if not result.conflicts:
        return messages.SUCCESS, f"{PAST_TENSE[action]} {done} {noun}{where}."
    reasons = "; ".join(f"{item.id}: {why}" for item, why in result.conflicts[:5])
    more = len(result.conflicts) - 5
    if more > 0:
        reasons += f"; and {more} more"
    left = len(result.conflicts)
    if done:
        text = f"{PAST_TENSE[action]} {done} {noun}{where}; left {left} alone: {reasons}."
        return messages.WARNING, text
    return messages.ERROR, f"Nothing was done, {left} left alone: {reasons}."
