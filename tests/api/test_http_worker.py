"""Workers in other processes with only a URL and a token: no Django, no database."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from queues import tokens
from queues.entroq import EntroQ, TaskData, inserting
from tests.helpers import ROOT, start_manage

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = """
import os, sys
from queues.entroq import EntroQ, HTTPBackend

eq = EntroQ(HTTPBackend(os.environ["ENTROQ_URL"], token=os.environ["ENTROQ_TOKEN"]))
done = eq.new_worker("remote", lease=10).run(lambda task: [task.as_deletion()], until_empty=True)
print(done, "django" in sys.modules)
"""


def worker_token() -> str:
    user = User.objects.create_superuser("worker", email="")
    return tokens.create(user, "remote", [tokens.Grant.parse("remote=claim,delete,read")])[1]


def test_a_worker_needs_only_the_client_api_a_url_and_a_token(live_server: LiveServer) -> None:
    EntroQ().modify(inserting(*[TaskData(queue="remote") for _ in range(20)]))
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    env = {**bare, "ENTROQ_URL": live_server.url, "ENTROQ_TOKEN": worker_token()}

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20", "False"], "all done, and Django never imported"
    assert EntroQ().tasks("remote") == []


def test_eqworker_works_through_the_api_without_database_credentials(
    live_server: LiveServer,
) -> None:
    EntroQ().modify(inserting(*[TaskData(queue="remote") for _ in range(10)]))
    worker = start_manage(
        "eqworker",
        "--url",
        live_server.url,
        "--handler",
        "tests.handlers.finish",
        "--queue",
        "remote",
        "--batch",
        DATABASE_URL="postgres://nobody:wrong@127.0.0.1:9/none",
        ENTROQ_TOKEN=worker_token(),
        EQ_TEST_LOG=os.devnull,
    )
    _, err = worker.communicate(timeout=60)

    assert worker.returncode == 0, err
    assert EntroQ().tasks("remote") == []
    assert "done in" not in err, "a task done is logged only at -v 2"
    assert "stopped after 10 task(s)" in err


def test_eqworker_refuses_a_url_without_a_token() -> None:
    worker = start_manage(
        "eqworker",
        "--url",
        "http://127.0.0.1:9",
        "--handler",
        "tests.handlers.finish",
        "--queue",
        "q",
        ENTROQ_TOKEN="",
    )
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert "ENTROQ_TOKEN" in err
