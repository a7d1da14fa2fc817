"""No-op tasks for the peers in the worker benchmark (found by their autodiscovery).

Each counts its runs (``bench.handlers.tick``) in the worker process that runs it.
"""

from django.tasks import task
from procrastinate.contrib.django import app

from bench.handlers import tick


@task(backend="db", queue_name="bench")
def db_noop() -> None:
    tick()


@task(backend="entroq", queue_name="bench")
def entroq_noop() -> None:
    tick()


@app.task(queue="bench")  # type: ignore[untyped-decorator]
def procrastinate_noop() -> None:
    tick()
