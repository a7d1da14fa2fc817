"""Handlers for the worker-process tests: they record what they do in files.

``EQ_TEST_LOG`` names a file; each handler appends one line per event
(``start <id>``, ``finish <id>``). Appends of short lines are atomic on Linux, so
several processes may share the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from queues.entroq import ModifyArg, Task


def _record(event: str, task: Task) -> None:
    with open(os.environ["EQ_TEST_LOG"], "a") as log:
        log.write(f"{event} {task.id}\n")


def finish(task: Task) -> Sequence[ModifyArg]:
    """Record the task and delete it."""
    _record("finish", task)
    return [task.as_deletion()]


def slow(task: Task) -> Sequence[ModifyArg]:
    """Take ``EQ_TEST_SLEEP`` seconds over the task, then delete it."""
    _record("start", task)
    time.sleep(float(os.environ.get("EQ_TEST_SLEEP", "2")))
    _record("finish", task)
    return [task.as_deletion()]


def broken(task: Task) -> Sequence[ModifyArg]:
    raise RuntimeError("handler bug")
