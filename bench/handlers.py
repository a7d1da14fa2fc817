"""The eqworker handler of the worker benchmark."""

from collections.abc import Sequence

from queues.entroq import ModifyArg, Task


def noop(task: Task) -> Sequence[ModifyArg]:
    return [task.as_deletion()]
