"""The no-op handlers of the worker benchmark, counting what they run.

Every contender's job calls ``tick()`` in the worker process that runs it; the
benchmark reads ``done()`` at the end of that process, so that the counts of all its
processes show whether any task was lost (fewer than were queued) or run twice (more).
"""

import threading
from collections.abc import Sequence

from queues.entroq import ModifyArg, Task

_lock = threading.Lock()
_done = 0


def tick() -> None:
    """Count one task run in this process."""
    global _done
    with _lock:
        _done += 1


def done() -> int:
    """Return how many tasks this process has run."""
    return _done


def noop(task: Task) -> Sequence[ModifyArg]:
    """The eqworker handler: count the task and delete it."""
    tick()
    return [task.as_deletion()]
