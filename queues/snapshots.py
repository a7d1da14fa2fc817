"""Queue stats shared by every viewer: one snapshot per refresh period, kept for charts.

The overview and the claims view read the newest snapshot; the first request of a
new period starts taking the next one in a thread of its own (a unique slot decides
which request, across processes) and is answered from the newest meanwhile, so open
tabs cost the database one ``queue_stats`` per period in all, not one per tab, and a
refreshing page never waits for it. A snapshot every ``KEEP_EVERY`` is kept for
``KEEP_HOURS`` hours, for the charts; the others are pruned after ``RECENT``. The
throughput chart reads the departures the backend counts
(``queues.entroq.departures``), pruned alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from queues.conf import app_settings
from queues.entroq import QueueStat
from queues.entroq.django_backend import is_timeout, statement_timeout
from queues.entroq.wire import decode_time, encode_time
from queues.models import Departures, StatsSnapshot
from queues.service import client

logger = logging.getLogger(__name__)
_threads: set[threading.Thread] = set()

KEEP_EVERY = timedelta(minutes=5)
KEEP_HOURS = 6
RECENT = timedelta(minutes=10)


@dataclass
class Snapshot:
    taken: datetime
    stats: dict[str, QueueStat]
    #: No stats yet: the first ones are being taken (``stats`` is empty).
    pending: bool = False


def latest() -> Snapshot:
    """Return the newest stats, taking new ones once a refresh period has passed.

    Stats a little older than a period are returned as they are while a thread of
    this process takes the next ones, so a refreshing page never waits for a scan of
    the table. The first stats, those after the dashboard sat idle, and those asked
    for inside a transaction (which another thread could not see) are taken in the
    caller; callers meanwhile get a pending snapshot rather than a second scan.
    """
    period = max(app_settings().DASHBOARD_MIN_REFRESH_SECONDS, 0.5)
    now = client().time()
    complete = StatsSnapshot.objects.filter(stats__isnull=False).order_by("-taken")
    newest = complete.first()
    age = math.inf if newest is None else (now - newest.taken).total_seconds()
    if newest is not None and age < period:
        return _read(newest)
    # As old as one missed refresh of a default page: shown while new ones are taken.
    usable = newest if age < period + 2 * app_settings().DASHBOARD_REFRESH_SECONDS else None
    meanwhile = _read(usable) if usable is not None else Snapshot(now, {}, pending=True)
    limit = app_settings().DASHBOARD_SNAPSHOT_SECONDS
    taking = StatsSnapshot.objects.filter(stats__isnull=True)
    if taking.filter(taken__gt=now - timedelta(seconds=limit)).exists():
        return meanwhile  # on a large table a snapshot outlasts a period: one at a time
    try:
        # A short write of its own claims the period: only then are stats computed,
        # outside any transaction (SQLite would hold its write lock meanwhile).
        with transaction.atomic():
            row = StatsSnapshot.objects.create(taken=now, slot=math.floor(now.timestamp() / period))
    except IntegrityError:
        return meanwhile  # another request claimed this period
    if usable is not None and not connection.in_atomic_block:
        thread = threading.Thread(target=_take_apart, args=(row.pk, now), daemon=True)
        _threads.add(thread)
        thread.start()
        return meanwhile
    return _take(row.pk, now)


def _take(pk: int, now: datetime) -> Snapshot:
    """Take the stats of the snapshot ``pk`` claimed, store and return them."""
    limit = app_settings().DASHBOARD_SNAPSHOT_SECONDS
    try:
        # Longer than a page's own queries may take: it is one scan for every viewer.
        with statement_timeout(limit):
            stats = client().queue_stats()
    except Exception as error:
        claimed = StatsSnapshot.objects.filter(pk=pk, stats__isnull=True)
        with contextlib.suppress(Exception):
            if is_timeout(error):
                # The next scan would run out too: not before another whole limit.
                claimed.update(taken=client().time())
            else:
                claimed.delete()  # the next request may try again
        raise
    kept = not StatsSnapshot.objects.filter(kept=True, taken__gt=now - KEEP_EVERY).exists()
    StatsSnapshot.objects.filter(pk=pk).update(
        stats={name: _pack(stat) for name, stat in stats.items()}, kept=kept
    )
    if kept:
        _prune(now)  # every KEEP_EVERY is often enough
    return Snapshot(now, stats)


def _take_apart(pk: int, now: datetime) -> None:
    """Take a snapshot in a thread of its own (with its own database connection)."""
    try:
        _take(pk, now)
    except Exception:
        # Viewers go on with the previous stats; a later period tries again.
        logger.exception("entroq: taking the dashboard's stats snapshot failed")
    finally:
        connection.close()
        _threads.discard(threading.current_thread())


def settle(timeout: float = 10.0) -> None:
    """Wait for snapshots being taken in threads of this process (before shutdown)."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))


def history(queues: list[str], hours: int = KEEP_HOURS) -> dict[str, list[tuple[datetime, int]]]:
    """Return each queue's size at each kept snapshot of the last ``hours``, oldest first."""
    since = timezone.now() - timedelta(hours=hours)
    series: dict[str, list[tuple[datetime, int]]] = {q: [] for q in queues}
    kept = StatsSnapshot.objects.filter(kept=True, taken__gte=since, stats__isnull=False)
    kept = kept.order_by("taken")
    for taken, stats in kept.values_list("taken", "stats"):
        for queue in queues:
            packed = (stats or {}).get(queue)
            series[queue].append((taken, packed[0] if packed else 0))
    return series


def throughput(queue: str, hours: int = KEEP_HOURS) -> list[tuple[datetime, float]]:
    """Return the tasks leaving ``queue`` per minute, averaged over each whole
    ``KEEP_EVERY`` of the last ``hours``, oldest first (zero where none left)."""
    bucket = KEEP_EVERY.total_seconds()
    end = math.floor(timezone.now().timestamp() / bucket) * bucket - bucket  # the last whole one
    start = end - hours * 3600
    left: dict[float, int] = {}
    since = datetime.fromtimestamp(start, UTC)
    rows = Departures.objects.filter(queue=queue, minute__gte=since)
    for minute, count in rows.values_list("minute", "count"):
        slot = math.floor(minute.timestamp() / bucket) * bucket
        left[slot] = left.get(slot, 0) + count
    per_minute = bucket / 60
    return [
        (datetime.fromtimestamp(slot, UTC), left.get(slot, 0) / per_minute)
        for slot in range(int(start), int(end) + 1, int(bucket))
    ]


def _pack(stat: QueueStat) -> list[object]:
    earliest = None if stat.earliest is None else encode_time(stat.earliest)
    return [stat.size, stat.available, stat.claimed, stat.future, stat.max_claims, earliest]


def _read(row: StatsSnapshot) -> Snapshot:
    stats = {}
    for name, (size, available, claimed, future, max_claims, earliest) in (row.stats or {}).items():
        stats[name] = QueueStat(
            name=name,
            size=size,
            available=available,
            claimed=claimed,
            future=future,
            max_claims=max_claims,
            earliest=None if earliest is None else decode_time(earliest, "earliest"),
        )
    return Snapshot(row.taken, stats)


def _prune(now: datetime) -> None:
    # Not kept, or never completed (the request that claimed it died).
    StatsSnapshot.objects.filter(kept=False, taken__lt=now - RECENT).delete()
    StatsSnapshot.objects.filter(taken__lt=now - timedelta(hours=KEEP_HOURS)).delete()
    Departures.objects.filter(minute__lt=now - timedelta(hours=KEEP_HOURS)).delete()
