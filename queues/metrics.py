"""Prometheus metrics of the API and the queues, served at ``/metrics``.

Counters and histograms count this process's API requests; under gunicorn, set
``PROMETHEUS_MULTIPROC_DIR`` (``make serve`` does) and every worker process's counts
are added up. Queue sizes come from one ``queue_stats`` per ``METRICS_CACHE_SECONDS``
at most, whoever scrapes, so scraping costs the database O(1).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from queues.conf import app_settings
from queues.entroq import QueueStat
from queues.service import client

REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "entroq_api_requests",
    "API requests by operation and HTTP status.",
    ["operation", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "entroq_api_request_seconds",
    "API request time by operation (claims include their long-poll wait).",
    ["operation"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CLAIMS = Counter(
    "entroq_claims",
    "API claims by outcome: claimed, empty, refused (429: too many waiting) or abandoned "
    "(the client left while it waited).",
    ["outcome"],
    registry=REGISTRY,
)
MODIFICATIONS = Counter(
    "entroq_modifications",
    "API modifications by outcome: done, conflict or invalid.",
    ["outcome"],
    registry=REGISTRY,
)
WAITING = Gauge(
    "entroq_api_claims_waiting",
    "API claims waiting for a task now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
WAITING_BOUND = Gauge(
    "entroq_api_claims_waiting_max",
    "API claims that may wait at once (beyond, claims are answered 429), in the processes "
    "that have served a waiting claim.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

WORKER_WINDOW = 60.0
_claimants: dict[uuid.UUID, float] = {}
_claimants_lock = threading.Lock()
# Apart from the claimants' lock: a slow stats query must never hold up a claim.
_stats_lock = threading.Lock()
_stats: tuple[float, dict[str, QueueStat] | None] = (0.0, None)


def saw_claimant(claimant: uuid.UUID) -> None:
    """Note that ``claimant`` asked for a task: it counts as a worker for a minute."""
    now = time.monotonic()
    with _claimants_lock:
        _claimants[claimant] = now
        if len(_claimants) > 10_000:  # forget the long gone
            for key in [k for k, seen in _claimants.items() if now - seen > WORKER_WINDOW]:
                del _claimants[key]


def active_workers() -> int:
    now = time.monotonic()
    with _claimants_lock:
        return sum(1 for seen in _claimants.values() if now - seen <= WORKER_WINDOW)


def queue_stats() -> dict[str, QueueStat] | None:
    """Return the queues' stats, computed at most once per ``METRICS_CACHE_SECONDS``;
    None while the database cannot be asked."""
    global _stats
    with _stats_lock:
        taken, stats = _stats
        if time.monotonic() - taken < app_settings().METRICS_CACHE_SECONDS:
            return stats
        try:
            stats = client().queue_stats()
        except DatabaseError:
            stats = None
        _stats = (time.monotonic(), stats)
        return stats


class QueueCollector(Collector):
    """Queue sizes by state, the highest claim count, and workers seen by this process."""

    def collect(self) -> Iterator[Metric]:
        stats = queue_stats()
        yield GaugeMetricFamily(
            "entroq_queue_stats_up",
            "1 if the queue figures below are fresh; 0 while the database is away.",
            value=0 if stats is None else 1,
        )
        tasks = GaugeMetricFamily(
            "entroq_queue_tasks", "Tasks by queue and state.", labels=["queue", "state"]
        )
        claims = GaugeMetricFamily(
            "entroq_queue_max_claims", "The most claims of any task, by queue.", labels=["queue"]
        )
        for name, stat in (stats or {}).items():
            for state in ("available", "claimed", "future"):
                tasks.add_metric([name, state], getattr(stat, state))
            claims.add_metric([name], stat.max_claims)
        yield tasks
        yield claims
        yield GaugeMetricFamily(
            "entroq_api_claimants",
            "Claimants that asked the answering process's API for a task in the last minute.",
            value=active_workers(),
        )


def exposition() -> bytes:
    """Return every metric in Prometheus's text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(QueueCollector())
    return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
