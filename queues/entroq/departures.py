"""Counts of the tasks leaving each queue, per minute, for the throughput chart.

A task leaves a queue when it is deleted (done) or moved to another queue (such as
its error queue). Each process counts in memory, after commit, and adds its counts to
the departures table in one statement when ``FLUSH_SECONDS`` have passed since its
last write and it next claims or finishes a task, and when its client closes: the hot
paths gain no write and no row that every worker would update. Counts are kept by
the minute they were made in, so a late write lands where it belongs; a process that
dies loses what it had not written. The chart is a rate, not a ledger.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

DEPARTURES_TABLE = "entroq_departures"
FLUSH_SECONDS = 10.0


class DepartureCounts:
    """Departures counted in this process and not yet written, by (queue, minute)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()
        self._taken = time.monotonic()

    def add(self, queues: Iterable[str]) -> None:
        """Count one departure from each of ``queues`` (a queue may repeat)."""
        minute = int(time.time() // 60)
        with self._lock:
            for queue in queues:
                self._counts[queue, minute] += 1

    def due(self) -> bool:
        """Return whether counts wait and the last ``take`` is ``FLUSH_SECONDS`` old."""
        return bool(self._counts) and time.monotonic() - self._taken >= FLUSH_SECONDS

    def take(self) -> list[tuple[str, datetime, int]]:
        """Return and forget the counts as (queue, start of the minute, count)."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._taken = time.monotonic()
        return [
            (queue, datetime.fromtimestamp(minute * 60, UTC), count)
            for (queue, minute), count in counts.items()
        ]

    def put_back(self, taken: list[tuple[str, datetime, int]]) -> None:
        """Count again what ``take`` returned and could not be written."""
        with self._lock:
            for queue, start, count in taken:
                self._counts[queue, int(start.timestamp() // 60)] += count
