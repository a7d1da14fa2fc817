"""Queue stats shared by every viewer: one snapshot per refresh period, kept for charts.

The overview and the claims view read the newest snapshot; the first request of a
new period starts taking the next one in a thread of its own (a unique slot decides
which request, across processes) and is answered from the newest meanwhile, so open
tabs cost the database one ``queue_stats`` per period in all, not one per tab, and no
page waits for it. A snapshot every ``KEEP_EVERY`` is kept for ``KEEP_HOURS`` hours,
for the charts; the others are pruned after ``RECENT``. The throughput chart reads
the departures the backend counts (``queues.entroq.departures``), pruned alike.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from queues import conf
from queues.entroq import QueueStat
from queues.entroq.django_backend import statement_timeout
from queues.entroq.wire import decode_time, encode_time
from queues.models import Departures, StatsSnapshot
from queues.service import client

logger = logging.getLogger(__name__)

KEEP_EVERY = timedelta(minutes=5)
KEEP_HOURS = 6
RECENT = timedelta(minutes=10)


@dataclass
class Snapshot:
    taken: datetime
    stats: dict[str, QueueStat]


def latest() -> Snapshot:
    """Return the newest stats, taking new ones once a refresh period has passed.

    Stats older than a period are returned as they are while a thread of this process
    takes the next ones (outside the caller's request, so a page never waits for a
    scan of the table); only the very first stats, or stats asked for inside a
    transaction (which another thread could not see), are taken in the caller.
    """
    period = max(float(conf.get("DASHBOARD_MIN_REFRESH_SECONDS")), 0.5)
    now = client().time()
    complete = StatsSnapshot.objects.filter(stats__isnull=False).order_by("-taken")
    newest = complete.first()
    if newest is not None and (now - newest.taken).total_seconds() < period:
        return _read(newest)
    limit = float(conf.get("DASHBOARD_SNAPSHOT_SECONDS"))
    taking = StatsSnapshot.objects.filter(stats__isnull=True)
    if newest is not None and taking.filter(taken__gt=now - timedelta(seconds=limit)).exists():
        # On a large table a snapshot can take longer than a period: one at a time.
        return _read(newest)
    try:
        # A short write of its own claims the period: only then are stats computed,
        # outside any transaction (SQLite would hold its write lock meanwhile).
        with transaction.atomic():
            row = StatsSnapshot.objects.create(taken=now, slot=math.floor(now.timestamp() / period))
    except IntegrityError:
        # Another request is taking this period's snapshot: use the newest there is.
        return _read(newest) if newest is not None else Snapshot(now, client().queue_stats())
    if newest is not None and not connection.in_atomic_block:
        threading.Thread(target=_take_apart, args=(row.pk, now), daemon=True).start()
        return _read(newest)
    return _take(row.pk, now)


def _take(pk: int, now: datetime) -> Snapshot:
    """Take the stats of the snapshot ``pk`` claimed, store and return them."""
    # Longer than a page's own queries may take: it is one scan for every viewer.
    with statement_timeout(float(conf.get("DASHBOARD_SNAPSHOT_SECONDS"))):
        stats = client().queue_stats()
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
        # Viewers go on with the previous stats; the next period tries again.
        logger.exception("entroq: taking the dashboard's stats snapshot failed")
    finally:
        connection.close()


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
