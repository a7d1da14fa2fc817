"""The HTTP API under load on a real gunicorn and PostgreSQL, which restarts midway.

The short form of ``bench/http.py``: clients claim and delete for a few seconds;
the database restarts; clients fail cleanly, recover, and no task is lost or
finished twice.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from bench import http_load
from scripts.pgcluster import cluster
from scripts.webserver import manage, serving

CLIENTS = 8
TASKS = 4000

SETUP = """
import json
from django.contrib.auth.models import User
from queues import tokens
from queues.entroq import EntroQ, TaskData, inserting
user = User.objects.create_superuser("load", email="")
grants = [tokens.Grant.parse("=read,claim,insert,change,delete")]
secrets = [tokens.create(user, f"client {{i}}", grants)[1] for i in range({clients})]
inserted, _ = EntroQ().modify(inserting(*[TaskData(queue="{queue}") for _ in range({tasks})]))
print(json.dumps({{"secrets": secrets, "ids": [str(t.id) for t in inserted]}}))
"""


def prepare(url: str, clients: int, tasks: int) -> tuple[list[str], set[uuid.UUID]]:
    """Migrate, make a user with one token a client, insert the tasks."""
    manage(url, "migrate", "--no-input", "-v", "0")
    code = SETUP.format(clients=clients, tasks=tasks, queue=http_load.QUEUE)
    out = manage(url, "shell", "--no-imports", "-c", code)
    made = json.loads(out.strip().splitlines()[-1])
    return made["secrets"], {uuid.UUID(i) for i in made["ids"]}


def remaining(url: str) -> set[uuid.UUID]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT id FROM entroq_task WHERE queue = %s", [http_load.QUEUE])
        return {row[0] for row in rows}


@pytest.mark.postgres
def test_clients_survive_a_database_restart_and_lose_nothing() -> None:
    # Durable: a crash of a cluster with fsync or synchronous commit off loses commits
    # it had acknowledged, which would look like tasks deleted twice.
    with cluster() as pg:
        secrets, inserted = prepare(pg.url, CLIENTS, TASKS)
        with serving(pg.url, workers=2, threads=CLIENTS + 4) as base:
            load = http_load.run(base, secrets, seconds=8, fault=pg.restart, fault_after=3)
        left = remaining(pg.url)
    print(load.summary())

    assert http_load.check(load, inserted, left) == []
    assert load.deleted, "the clients got work done"
    assert load.recovered_at is not None, "deletes went on after the restart"
    assert load.restored_at is not None
    assert load.recovered_at - load.restored_at < 5, "and soon"
