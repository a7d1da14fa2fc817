"""Worker processes draining no-op tasks: eqworker beside the peers, in one run.

On a throwaway PostgreSQL cluster at default durability, W worker processes drain N
no-op tasks, for each contender in turn:

- raw psycopg: one claim statement and one delete a task (the lifecycle benchmark's);
- ``manage.py eqworker --handler bench.handlers.noop --batch``;
- django-tasks-db's ``manage.py db_worker --batch`` (the peer a Django user would pick);
- procrastinate's ``manage.py procrastinate worker --one-shot``.

Each drain is timed from starting the processes to the last one exiting, so the
worker programs' start-up (Django's, about half a second) counts against them; the
raw reference is timed from its start signal. Run with ``make bench`` (``--quick``
checks in seconds that every contender still runs, as ``make test`` does).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import quick  # noqa: E402
from bench.lifecycle import Postgres, django_env, drain, insert_tasks  # noqa: E402

QUEUE = "bench"
PEERS = ("django_tasks_db", "procrastinate")


def env(url: str) -> dict[str, str]:
    return django_env(url, "bench.settings")


def manage(url: str, *args: str) -> None:
    """Run ``manage.py args`` with the peers installed; exit with its errors if it fails."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env(url),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stderr[-2000:]}")


def enqueue(url: str, kind: str, count: int) -> None:
    """Fill the contender's queue with ``count`` no-op tasks."""
    code = {
        "django-tasks-db": (
            "from django.db import transaction\n"
            "from bench.tasks import db_noop\n"
            f"with transaction.atomic():\n    [db_noop.enqueue() for _ in range({count})]\n"
        ),
        "procrastinate": (
            "from bench.tasks import procrastinate_noop\n"
            f"for start in range(0, {count}, 1000):\n"
            f"    n = min(1000, {count} - start)\n"
            "    procrastinate_noop.batch_defer(*({} for _ in range(n)))\n"
        ),
    }[kind]
    manage(url, "shell", "-c", code)


def run_processes(url: str, command: list[str], workers: int) -> float:
    """Start ``workers`` copies of ``manage.py command``; return seconds until all exit.

    Their logs go to files: a pipe read only at the end would fill up and stall them.
    """
    with tempfile.TemporaryDirectory() as folder:
        logs = [open(Path(folder) / f"worker{i}.log", "w+") for i in range(workers)]  # noqa: SIM115
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), *command],
                env=env(url),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            for log in logs
        ]
        for proc, log in zip(procs, logs, strict=True):
            proc.wait(timeout=3600)
            if proc.returncode:
                log.seek(0)
                raise SystemExit(f"{command[0]} failed:\n{log.read()[-2000:]}")
        elapsed = time.perf_counter() - started
        for log in logs:
            log.close()
    return elapsed


def remaining(pg: Postgres, kind: str) -> int:
    sql = {
        "eqworker": "SELECT count(*) FROM entroq_task",
        "django-tasks-db": "SELECT count(*) FROM django_tasks_database_dbtaskresult "
        "WHERE status <> 'SUCCESSFUL'",
        "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
    }[kind]
    row = pg.conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def measure(url: str, kind: str, workers: int, count: int, pg: Postgres) -> float:
    """Return tasks per second for one drain by ``kind``."""
    if kind == "raw-psycopg":
        insert_tasks(url, count)
        pg.conn.execute("VACUUM ANALYZE entroq_task")
        return drain(kind, url, workers, count, pg).rate
    if kind == "eqworker":
        insert_tasks(url, count)
        pg.conn.execute("VACUUM ANALYZE entroq_task")
        command = ["eqworker", "--handler", "bench.handlers.noop", "--queue", QUEUE, "--batch"]
    elif kind == "django-tasks-db":
        enqueue(url, kind, count)
        command = [
            "db_worker",
            "--backend",
            "db",
            "--queue-name",
            QUEUE,
            "--batch",
            "--no-startup-delay",
        ]
    else:
        enqueue(url, kind, count)
        command = ["procrastinate", "worker", "--queues", QUEUE, "--one-shot"]
    elapsed = run_processes(url, command, workers)
    left = remaining(pg, kind)
    if left:
        raise SystemExit(f"{kind}: {left} of {count} tasks not done")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = quick.parse_args(parser, {"tasks": 300, "repeats": 1})

    missing = [p for p in PEERS if importlib.util.find_spec(p) is None]
    if missing:
        raise SystemExit(
            f"the peers {', '.join(missing)} are missing: install the bench extra "
            "(make install, or pip install -e '.[bench]')"
        )

    from scripts.pgcluster import cluster

    kinds = ["raw-psycopg", "eqworker", "django-tasks-db", "procrastinate"]
    print(
        f"Worker benchmark: {args.tasks:,} no-op tasks, W = {args.workers} worker processes, "
        f"{args.repeats} run(s) each{quick.note(args)}"
    )
    with cluster() as running:
        url = running.url
        manage(url, "migrate", "--no-input")
        pg = Postgres(url)
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.repeats):
            for kind in kinds:
                rates[kind].append(measure(url, kind, args.workers, args.tasks, pg))
        pg.conn.close()
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"  {'contender':<16} {'tasks/s':>9} {'x raw':>7} {'eqworker is':>12}")
    for kind in kinds:
        vs = (
            ""
            if kind in ("raw-psycopg", "eqworker")
            else (f"{median['eqworker'] / median[kind]:>10.1f}x")
        )
        print(
            f"  {kind:<16} {median[kind]:>9,.0f} "
            f"{median[kind] / median['raw-psycopg']:>7.2f} {vs:>12}"
        )


if __name__ == "__main__":
    main()
