"""The HTTP API under load on a real gunicorn and PostgreSQL, which restarts midway.

The short form of ``bench/http_api.py``: clients claim and delete for a few seconds;
the database restarts; clients fail cleanly, recover, and no task is lost or
finished twice.
"""

from __future__ import annotations

import pytest

from bench import http_load
from scripts.pgcluster import cluster
from scripts.webserver import serving

CLIENTS = 8
TASKS = 4000


@pytest.mark.postgres
def test_clients_survive_a_database_restart_and_lose_nothing() -> None:
    # Durable: a crash of a cluster with fsync or synchronous commit off loses commits
    # it had acknowledged, which would look like tasks deleted twice.
    with cluster() as pg:
        secrets, inserted = http_load.prepare(pg.url, CLIENTS, TASKS)
        with serving(pg.url, workers=2, threads=CLIENTS + 4) as base:
            load = http_load.run(base, secrets, seconds=8, fault=pg.restart, fault_after=3)
        left = http_load.remaining(pg.url)
    print(load.summary())

    assert http_load.check(load, inserted, left) == []
    assert load.deleted, "the clients got work done"
    assert load.recovered_at is not None, "deletes went on after the restart"
    assert load.restored_at is not None
    assert load.recovered_at - load.restored_at < 5, "and soon"
