"""What an API listing of large values costs a server process in memory.

Stores 20 tasks of 8 MiB in one queue of a throwaway PostgreSQL cluster, serves the
site with gunicorn (one process of four threads), and reads the queue through the API:
once as one ``GET /api/v1/tasks`` (a page: at most ``API_LIST_VALUE_BYTES``, 8 MiB, of
values), then whole through ``HTTPBackend``, which follows the pages. For each it prints
how much the process's peak resident memory (``VmHWM``) grew, and that as a multiple
of the page's value budget: a bounded answer keeps it near a constant whatever the
queue holds. ``make bench`` runs it; ``--quick`` checks it works in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench import quick  # noqa: E402
from scripts.pgcluster import cluster  # noqa: E402
from scripts.webserver import manage, serving  # noqa: E402

MIB = 1024 * 1024
BUDGET = 8 * MIB  # API_LIST_VALUE_BYTES by default
TOKEN = (
    "from django.contrib.auth.models import User; from queues import tokens; "
    "user = User.objects.create_superuser('bench', email=''); "
    "print(tokens.create(user, 'bench', [tokens.Grant.parse('=read')])[1])"
)


def memory(pid: int, field: str) -> int:
    """Return a memory figure of process ``pid`` from ``/proc`` (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Start the peak (``VmHWM``) of process ``pid`` anew from what it holds now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def children(pid: int) -> list[int]:
    """Return the processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def gunicorn_worker() -> int:
    """Return the PID of the one worker of the gunicorn this process started."""
    for pid in children(os.getpid()):
        if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
            (worker,) = children(pid)
            return worker
    raise RuntimeError("no gunicorn started by this process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="tasks in the queue")
    parser.add_argument("--size", type=float, default=8, help="MiB of value a task")
    args = quick.parse_args(parser, {"tasks": 3, "size": 1})
    size = int(args.size * MIB)
    print(
        f"API listing memory: {args.tasks} tasks of {args.size:g} MiB, one gunicorn process "
        f"of 4 threads{quick.note(args)}"
    )
    with cluster(fast=True) as pg:
        manage(pg.url, "migrate", "--no-input", "-v", "0")
        secret = manage(pg.url, "shell", "-c", TOKEN).strip().splitlines()[-1]
        now = datetime.now(UTC)
        with psycopg.connect(pg.url, autocommit=True) as db:
            for _ in range(args.tasks):
                db.execute(
                    "INSERT INTO entroq_task (id, queue, version, at, claimant, claims, value, "
                    "created, modified, attempt, err, err_kind) "
                    "VALUES (%s, 'big', 0, %s, NULL, 0, %s, %s, %s, 0, '', '')",
                    (uuid.uuid4(), now, os.urandom(size), now, now),
                )
        with serving(pg.url, workers=1, threads=4) as base:
            from queues.entroq import HTTPBackend, TasksQuery

            headers = {"Authorization": f"Bearer {secret}"}
            urllib.request.urlopen(urllib.request.Request(base + "/api/v1/time", headers=headers))
            worker = gunicorn_worker()
            print(
                f"\n  {'read':<34} {'tasks':>6} {'MiB':>6} {'s':>6} {'grew MiB':>9} {'x page':>7}"
            )
            for name in ("one GET /api/v1/tasks", "every page, HTTPBackend.tasks"):
                reset_peak(worker)
                before = memory(worker, "VmRSS")
                started = time.monotonic()
                if name.startswith("one"):
                    request = urllib.request.Request(
                        base + "/api/v1/tasks?queue=big", headers=headers
                    )
                    with urllib.request.urlopen(request, timeout=300) as response:
                        answer = json.loads(response.read())
                    values = sum(len(t["value"]) * 3 // 4 for t in answer["tasks"])
                    count = len(answer["tasks"])
                else:
                    listed = HTTPBackend(base, token=secret, timeout=300).tasks(
                        TasksQuery(queue="big")
                    )
                    values, count = sum(len(t.value) for t in listed), len(listed)
                took = time.monotonic() - started
                grew = memory(worker, "VmHWM") - before
                print(
                    f"  {name:<34} {count:>6} {values / MIB:>6.0f} {took:>6.1f} "
                    f"{grew / MIB:>9.0f} {grew / BUDGET:>7.1f}"
                )


if __name__ == "__main__":
    main()
