"""What the dashboard's tests share: tasks to show, and reading what a page shows."""

from __future__ import annotations

from queues.entroq import EntroQ, ErrorTaskValue, Task, inserting_into


def htmx(target: str) -> dict[str, str]:
    """Return the headers htmx sends for a request aimed at the element ``#target``."""
    return {"HX-Request": "true", "HX-Target": target}


def insert(eq: EntroQ, queue: str = "jobs", value: bytes = b"{}", **kwargs: object) -> Task:
    inserted, _ = eq.modify(inserting_into(queue, value=value, **kwargs))  # type: ignore[arg-type]
    return inserted[0]


def failed(eq: EntroQ, source: str = "jobs", err: str = "boom") -> tuple[Task, Task]:
    """Insert a task into ``source``, fail it into the error queue; return both."""
    original = insert(eq, source, b'{"n": 1}', attempt=2)
    wrapped = ErrorTaskValue(task=original, err=err).to_json()
    inserted, _ = eq.modify(original.as_deletion(), inserting_into(source + "/err", value=wrapped))
    return original, inserted[0]


def html(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined, no-any-return]


def messages_of(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]
