"""Queue stats shared by every viewer, kept for charts, pruned."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from queues import snapshots
from queues.entroq import EntroQ, inserting_into
from queues.models import Departures, StatsSnapshot
from tests.helpers import task_table_locked


def stats_queries(queries: CaptureQueriesContext) -> int:
    return sum(1 for q in queries if "GROUP BY queue" in q["sql"])


@pytest.mark.django_db
def test_viewers_within_a_period_share_one_computation(viewer: Client, settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 60}
    EntroQ().modify(inserting_into("q"))
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert viewer.get("/", {"refresh": "2"}).status_code == 200
        viewer.get("/claims")
    assert stats_queries(queries) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_take_one_snapshot_a_period(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 60}
    EntroQ().modify(inserting_into("q"))
    results: list[snapshots.Snapshot] = []

    def look() -> None:
        try:
            results.append(snapshots.latest())
        finally:
            connection.close()

    threads = [threading.Thread(target=look) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 6
    assert StatsSnapshot.objects.count() == 1
    assert all(r.stats["q"].size == 1 for r in results if r.stats)


@pytest.mark.django_db
def test_old_snapshots_are_pruned_and_kept_ones_chart(viewer: Client, settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 1}
    now = timezone.now()
    for minutes, size in ((400, 1), (60, 3), (30, 5), (20, 2)):
        StatsSnapshot.objects.create(
            taken=now - timedelta(minutes=minutes),
            slot=-minutes,
            kept=True,
            stats={"jobs": [size, size, 0, 0, 0, None], "jobs/err": [1, 1, 0, 0, 0, None]},
        )
    StatsSnapshot.objects.create(taken=now - timedelta(minutes=15), slot=-15, stats={})
    for hours in (7, 1):
        Departures.objects.create(queue="jobs", minute=now - timedelta(hours=hours), count=1)
    EntroQ().modify(inserting_into("jobs"))

    page = viewer.get("/").content.decode()

    assert list(Departures.objects.values_list("minute", flat=True)) == [now - timedelta(hours=1)]
    assert not StatsSnapshot.objects.filter(taken__lt=now - timedelta(hours=6)).exists()
    assert not StatsSnapshot.objects.filter(slot=-15).exists(), "an unkept old one goes"
    assert '<svg class="spark"' in page
    assert '<polyline class="depth"' in page
    assert '<polyline class="errors"' in page
    assert "size 1 to 5" in page


@pytest.mark.django_db
def test_a_snapshot_still_being_taken_is_not_taken_again(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 2}
    EntroQ().modify(inserting_into("q"))
    now = timezone.now()
    StatsSnapshot.objects.create(
        taken=now - timedelta(seconds=5), slot=-5, stats={"q": [7] * 5 + [None]}
    )
    StatsSnapshot.objects.create(taken=now - timedelta(seconds=3), slot=-3)  # in progress

    with CaptureQueriesContext(connection) as queries:
        seen = snapshots.latest()

    assert stats_queries(queries) == 0
    assert seen.stats["q"].size == 7, "the previous snapshot, while the next is taken"


@pytest.mark.django_db(transaction=True)
def test_stale_stats_are_answered_at_once_and_taken_anew_apart(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 2}
    EntroQ().modify(inserting_into("q"))
    old = timezone.now() - timedelta(seconds=10)
    StatsSnapshot.objects.create(taken=old, slot=-10, stats={"q": [7] * 5 + [None]})

    with CaptureQueriesContext(connection) as queries:
        seen = snapshots.latest()

    assert seen.stats["q"].size == 7, "the newest there is, at once"
    assert stats_queries(queries) == 0, "not taken in the caller"
    deadline = time.monotonic() + 10
    while not StatsSnapshot.objects.filter(taken__gt=old, stats__isnull=False).exists():
        assert time.monotonic() < deadline, "no new snapshot was taken"
        time.sleep(0.05)
    assert snapshots.latest().stats["q"].size == 1


@pytest.mark.django_db(transaction=True)
def test_stats_of_an_idle_dashboard_are_not_shown_but_taken_anew(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 2}
    EntroQ().modify(inserting_into("q"))
    StatsSnapshot.objects.create(
        taken=timezone.now() - timedelta(hours=1), slot=-3600, stats={"q": [7] * 5 + [None]}
    )
    assert snapshots.latest().stats["q"].size == 1


@pytest.mark.django_db
def test_no_second_scan_while_the_first_stats_are_taken(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 2}
    StatsSnapshot.objects.create(taken=timezone.now(), slot=-1)  # being taken elsewhere
    with CaptureQueriesContext(connection) as queries:
        seen = snapshots.latest()
    assert (seen.pending, seen.stats, stats_queries(queries)) == (True, {}, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the lock must wait for no test transaction
def test_a_snapshot_that_runs_out_of_time_is_not_tried_again_at_once(settings: Settings) -> None:
    settings.ENTROQ = {"DASHBOARD_MIN_REFRESH_SECONDS": 2, "DASHBOARD_SNAPSHOT_SECONDS": 1}
    EntroQ().modify(inserting_into("q"))
    with task_table_locked(), pytest.raises(OperationalError):
        snapshots.latest()
    with CaptureQueriesContext(connection) as queries:
        seen = snapshots.latest()  # within a second of the timeout

    assert seen.pending
    assert stats_queries(queries) == 0
