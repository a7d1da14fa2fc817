"""Queue patterns, and paused queues: claims skip them, and everything else goes on.

Claims and pauses name one queue (``billing/invoices``), every queue under a prefix
(``billing/*``, which covers queues created later too) or every queue (``*``); a claim
over a prefix leaves out the outcome queues under it (``…/err``, ``…/done``). While a
queue is paused no claim takes its tasks, on any backend; inserts, listings, changes
and deletions go on as before. Resuming wakes the claims that wait on it at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .errors import ERROR_SUFFIX
from .tasks import check_queue

# A pause of every queue under a prefix ends so; ``*`` alone pauses every queue.
PREFIX_MARK = "/*"
EVERY_QUEUE = "*"
# Where workers put what they finished: failures (``billing/charge/err``) and results
# (``django-tasks/default/done``). A claim over a prefix leaves them out, or a worker
# on ``billing/*`` would claim its own failures again, and a ``django.tasks`` runner
# its results; to claim from one, name it.
DONE_SUFFIX = "/done"
OUTCOME_SUFFIXES = (ERROR_SUFFIX, DONE_SUFFIX)
# A wake-up for this name, which no queue has, wakes every waiting claim (a resume).
EVERY_QUEUE_NOTE = ""
# A claim names at most this many prefixes: each is a search of the index in its
# statement, and every shape of statement is planned and kept.
MAX_CLAIM_PREFIXES = 10
# Pauses in force at most: every claim checks each queue against them, by a scan of
# the pauses (on PostgreSQL about 0.2 µs a pause; 100 cost a claim 15-20 µs, 1,000
# about 150). A prefix pause covers any number of queues.
MAX_PAUSES = 100


@dataclass(frozen=True, order=True, slots=True)
class Pause:
    """A paused queue (``prefix`` false), or every queue whose name starts with ``name``."""

    name: str
    prefix: bool = False
    #: When it began, where the backend says (not part of what the pause is).
    since: datetime | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str) -> Pause:
        """Read ``queue``, ``prefix/*`` or ``*``; raise ``ValueError`` for anything else."""
        if not isinstance(text, str):
            raise TypeError(f"a pause is a str, not {type(text).__name__}")
        _, prefixes = split_patterns([text])
        if not prefixes:
            return cls(check_queue(text, "a paused queue"))
        if prefixes[0]:  # "" is every queue
            check_queue(prefixes[0], "a paused prefix")
        return cls(prefixes[0], prefix=True)

    def __str__(self) -> str:
        return f"{self.name}*" if self.prefix else self.name

    def covers(self, queue: str) -> bool:
        """Return whether claims from ``queue`` skip it while this pause lasts."""
        return queue.startswith(self.name) if self.prefix else queue == self.name


def split_patterns(queues: Iterable[str]) -> tuple[list[str], list[str]]:
    """Return the queue names among ``queues`` and the prefixes their patterns name
    (``billing/*`` is ``billing/``, ``*`` is ``""``: every queue)."""
    names: list[str] = []
    prefixes: list[str] = []
    for queue in queues:
        if queue == EVERY_QUEUE:
            prefixes.append("")
        elif queue.endswith(PREFIX_MARK):
            prefixes.append(queue[:-1])  # keeps the slash: billing/* is not billing2
        else:
            names.append(queue)
    return names, prefixes


def is_outcome(queue: str) -> bool:
    """Return whether ``queue`` holds finished work, which claims over a prefix leave out."""
    return queue.endswith(OUTCOME_SUFFIXES)


def claimed_under(queue: str, prefixes: Iterable[str]) -> bool:
    """Return whether a claim over ``prefixes`` takes tasks of ``queue``."""
    return not is_outcome(queue) and any(queue.startswith(p) for p in prefixes)


def check_claim_patterns(queues: Iterable[str]) -> None:
    """Raise ``ValueError`` if ``queues`` name more prefixes than a claim may."""
    _, prefixes = split_patterns(queues)
    if len(prefixes) > MAX_CLAIM_PREFIXES:
        raise ValueError(
            f"a claim names at most {MAX_CLAIM_PREFIXES} prefixes (prefix/*), not {len(prefixes)}"
        )


def check_pause_count(count: int) -> None:
    """Raise ``ValueError`` if ``count`` pauses would be more than may be in force."""
    if count > MAX_PAUSES:
        raise ValueError(f"at most {MAX_PAUSES} pauses may be in force; resume some first")


def parse_all(texts: Iterable[str]) -> list[Pause]:
    """Parse each of ``texts`` (see ``Pause.parse``), without repeats, in order."""
    return list(dict.fromkeys(Pause.parse(text) for text in texts))


def unpaused(queues: Sequence[str], pauses: Iterable[Pause]) -> tuple[str, ...]:
    """Return those of ``queues`` that no pause covers."""
    held = list(pauses)
    if not held:
        return tuple(queues)
    return tuple(q for q in queues if not any(p.covers(q) for p in held))


def pauses_of(queue: str, pauses: Iterable[Pause]) -> list[Pause]:
    """Return the pauses that cover ``queue``."""
    return [p for p in pauses if p.covers(queue)]
