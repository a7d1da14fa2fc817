"""django.tasks functions for the backend tests (module level, as Django requires)."""

from __future__ import annotations

import os

from django.tasks import TaskContext, task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="default")
def fail(message: str) -> None:
    raise ValueError(message)


@task
async def async_double(n: int) -> int:
    return 2 * n


@task(takes_context=True)
def attempt_number(context: TaskContext[..., int]) -> int:
    return context.attempt


@task
def sleep_then_record() -> str:
    """Sleep ``EQ_TEST_SLEEP`` seconds, then append to ``EQ_TEST_LOG`` (crash tests)."""
    import time

    time.sleep(float(os.environ["EQ_TEST_SLEEP"]))
    with open(os.environ["EQ_TEST_LOG"], "a") as log:
        log.write("ran\n")
    return "ok"
