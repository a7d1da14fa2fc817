"""No-op tasks for the peers in the worker benchmark (found by their autodiscovery)."""

from django.tasks import task
from procrastinate.contrib.django import app


@task(backend="db", queue_name="bench")
def db_noop() -> None:
    return None


@app.task(queue="bench")  # type: ignore[untyped-decorator]
def procrastinate_noop() -> None:
    return None
