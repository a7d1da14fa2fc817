"""The task lifecycle through ``queues.entroq`` beside raw SQL doing the same, in one run.

Starts a throwaway PostgreSQL cluster at default durability, then:

1. bulk insert: N tasks through ``EntroQ.modify`` (1,000 a modification) beside raw
   psycopg sending plain multi-row INSERTs of 1,000 rows (the obvious way to do it);
2. claim-and-delete: W worker processes drain N tasks through ``EntroQ.try_claim`` and
   ``EntroQ.modify(task.as_deletion())``, beside W raw psycopg processes sending the
   same claim and delete statements (autocommit);
3. the same lifecycle on SQLite, beside the same SQL through the ``sqlite3`` module.

Contenders alternate and repeat; each figure is the median of its repeats, and every
ratio compares figures measured minutes apart on the same machine. Run with
``make bench`` (``BENCH_ARGS="--tasks 5000 --repeats 1"`` for a quick look;
``--quick`` checks in seconds that it works, as ``make test`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import quick  # noqa: E402

QUEUE = "bench"
INSERT_BATCH = 1000


# Workers (run in their own processes).


def entroq_worker(url: str) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connection

    from queues import entroq

    statements = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    eq = entroq.EntroQ(entroq.DjangoBackend())
    eq.time()  # connect before the clock starts
    ready_and_wait()
    with connection.execute_wrapper(count):
        done = claim_and_delete(eq)
    return {"done": done, "statements": statements}


def claim_and_delete(eq: Any) -> int:
    """Claim and delete until the queue is empty; return how many tasks were done."""
    done = 0
    while True:
        task = eq.try_claim(QUEUE, duration=60)
        if task is None:
            if eq.queues_empty(match_exact=QUEUE):
                return done
            continue
        eq.modify(task.as_deletion())
        done += 1


def raw_postgres_worker(url: str) -> dict[str, Any]:
    import psycopg

    from queues.entroq.django_backend.postgresql import POSTGRES_CLAIM
    from queues.entroq.django_backend.sql import DELETE_ONE, TASK_TABLE

    delete = DELETE_ONE.format(now="statement_timestamp()")
    me = uuid.uuid4()
    statements = done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        ready_and_wait()
        while True:
            row = conn.execute(
                POSTGRES_CLAIM,
                {"q0": QUEUE, "claimant": me, "duration": 60.0},
            ).fetchone()
            statements += 1
            if row is None:
                statements += 1
                if conn.execute(f"SELECT 1 FROM {TASK_TABLE} LIMIT 1").fetchone() is None:
                    break
                continue
            conn.execute(delete, {"id": row[0], "version": row[2], "me": me})
            statements += 1
            done += 1
    return {"done": done, "statements": statements}


def raw_sqlite_worker(url: str) -> dict[str, Any]:
    import random
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from queues.entroq.backend import CLAIM_CANDIDATES
    from queues.entroq.django_backend.sql import DELETE_ONE, TASK_TABLE

    def now() -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    def text(moment: datetime) -> str:
        return moment.isoformat(" ", "microseconds")

    delete = DELETE_ONE.format(now=":now").replace("%(", ":").replace(")s", "")
    me = uuid.uuid4().hex
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ready_and_wait()
    statements = done = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        moment = now()
        rows = conn.execute(
            f"SELECT id FROM {TASK_TABLE} WHERE queue = ? AND at <= ? "
            f"ORDER BY at LIMIT {CLAIM_CANDIDATES}",
            (QUEUE, text(moment)),
        ).fetchall()
        statements += 2
        claimed = None
        if rows:
            claimed = conn.execute(
                f"UPDATE {TASK_TABLE} SET version = version + 1, claims = claims + 1, "
                "claimant = ?, at = ?, modified = ? WHERE id = ? RETURNING id, version",
                (me, text(moment + timedelta(seconds=60)), text(moment), random.choice(rows)[0]),
            ).fetchone()
            statements += 1
        conn.execute("COMMIT")
        statements += 1
        if claimed is None:
            statements += 1
            if conn.execute(f"SELECT 1 FROM {TASK_TABLE} LIMIT 1").fetchone() is None:
                break
            continue
        conn.execute(
            delete, {"id": claimed[0], "version": claimed[1], "me": me, "now": text(now())}
        )
        statements += 1
        done += 1
    return {"done": done, "statements": statements}


def http_worker(url: str) -> dict[str, Any]:
    """The entroq loop through ``HTTPBackend`` to the server in ``ENTROQ_BENCH_URL``."""
    from queues import entroq

    backend = entroq.HTTPBackend(
        os.environ["ENTROQ_BENCH_URL"], token=os.environ["ENTROQ_BENCH_TOKEN"]
    )
    eq = entroq.EntroQ(backend)
    eq.time()  # connect before the clock starts
    ready_and_wait()
    return {"done": claim_and_delete(eq), "statements": None}


WORKERS = {
    "entroq": entroq_worker,
    "entroq-http": http_worker,
    "raw-psycopg": raw_postgres_worker,
    "raw-sqlite3": raw_sqlite_worker,
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


CPU_AT_START = 0.0


def ready_and_wait() -> None:
    """Say ready, wait for the go; CPU is counted from here, not from the imports."""
    global CPU_AT_START
    print("ready", flush=True)
    sys.stdin.readline()
    CPU_AT_START = cpu_seconds()


def worker_main(kind: str, url: str) -> None:
    result = WORKERS[kind](url)
    result["cpu"] = cpu_seconds() - CPU_AT_START
    print(json.dumps(result), flush=True)


# The driver.


def cpu_times() -> tuple[float, float]:
    """Return (total, steal) jiffies from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return float(sum(fields)), float(fields[7] if len(fields) > 7 else 0)


@dataclass
class Drain:
    rate: float
    statements: float | None  # None: not seen (another process sends them)
    cpu_ms: float
    commits: float | None
    wal_bytes: float | None
    steal: float


def django_env(url: str, settings: str = "entroq_site.settings") -> dict[str, str]:
    """Return the environment of a production-like Django process on ``url``."""
    from scripts.webserver import production_env

    return production_env(url, DJANGO_SETTINGS_MODULE=settings)


def migrate(url: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--no-input", "-v", "0"],
        env=django_env(url),
        check=True,
    )


class Postgres:
    """Server counters around a run: commits and WAL bytes."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def counters(self) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
            " (SELECT wal_bytes FROM pg_stat_wal)"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def settle(self) -> None:
        # Statistics are flushed by backends at transaction end and read with a
        # snapshot; clear the snapshot so that the next read is current.
        time.sleep(1.1)
        self.conn.execute("SELECT pg_stat_clear_snapshot()")


def insert_tasks(url: str, count: int) -> float:
    """Insert ``count`` tasks through the client API; return tasks per second."""
    code = (
        "import time, django; django.setup()\n"
        "from queues import entroq\n"
        "eq = entroq.EntroQ()\n"
        f"left = {count}\n"
        "started = time.perf_counter()\n"
        "while left:\n"
        f"    n = min(left, {INSERT_BATCH})\n"
        "    eq.modify(*(entroq.inserting_into('bench', value=b'{}') for _ in range(n)))\n"
        "    left -= n\n"
        "print(time.perf_counter() - started)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=django_env(url),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return count / float(out.split()[-1])


def raw_insert_tasks(url: str, count: int) -> float:
    """Insert ``count`` tasks with raw psycopg multi-row INSERTs; return tasks per second."""
    import psycopg

    from queues.entroq.django_backend.sql import COLUMNS, TASK_TABLE

    me = uuid.uuid4()
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        left = count
        while left:
            n = min(left, INSERT_BATCH)
            rows = ", ".join(["(%s, %s, 0, now(), %s, 0, %s, now(), now(), 0, '')"] * n)
            params: list[Any] = []
            for _ in range(n):
                params += [uuid.uuid4(), QUEUE, me, b"{}"]
            conn.execute(f"INSERT INTO {TASK_TABLE} ({COLUMNS}) VALUES {rows}", params)
            conn.commit()
            left -= n
        return count / (time.perf_counter() - started)


def drain(kind: str, url: str, workers: int, count: int, pg: Postgres | None) -> Drain:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, "--url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=django_env(url),
            cwd=ROOT,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{kind} worker failed to start")
    if pg:
        pg.settle()
        commits0, wal0 = pg.counters()
    total0, steal0 = cpu_times()
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{kind} worker failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.perf_counter() - started
    total1, steal1 = cpu_times()
    done = sum(r["done"] for r in results)
    if done != count:
        raise SystemExit(f"{kind}: processed {done} of {count} tasks")
    commits = wal = None
    if pg:
        pg.settle()
        commits1, wal1 = pg.counters()
        commits, wal = (commits1 - commits0) / count, (wal1 - wal0) / count
    return Drain(
        rate=count / elapsed,
        statements=None
        if results[0]["statements"] is None
        else sum(r["statements"] for r in results) / count,
        cpu_ms=1000 * sum(r["cpu"] for r in results) / count,
        commits=commits,
        wal_bytes=wal,
        steal=100 * (steal1 - steal0) / max(total1 - total0, 1),
    )


def median_drain(runs: list[Drain]) -> Drain:
    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return Drain(
        rate=statistics.median(r.rate for r in runs),
        statements=med([r.statements for r in runs]),
        cpu_ms=statistics.median(r.cpu_ms for r in runs),
        commits=med([r.commits for r in runs]),
        wal_bytes=med([r.wal_bytes for r in runs]),
        steal=max(r.steal for r in runs),
    )


def fmt(value: float | None, spec: str) -> str:
    """Format ``value`` by ``spec`` (``>10.2f``); one not seen as ``-``, as wide."""
    if value is None:
        # As wide as a figure, so that the columns after it stay aligned.
        return "-".rjust(int(spec.lstrip("<>^").split(".")[0].rstrip(",")))
    return format(value, spec)


def report(title: str, rows: list[tuple[str, Drain]], reference: Drain) -> None:
    print(f"\n{title}")
    print(
        f"  {'contender':<16} {'tasks/s':>9} {'ratio':>6} {'stmts/task':>10} "
        f"{'commits/task':>12} {'WAL B/task':>10} {'CPU ms/task':>11} {'steal %':>7}"
    )
    for name, d in rows:
        print(
            f"  {name:<16} {d.rate:>9,.0f} {d.rate / reference.rate:>6.2f} "
            f"{fmt(d.statements, '>10.2f')} {fmt(d.commits, '>12.2f')} "
            f"{fmt(d.wal_bytes, '>10,.0f')} "
            f"{d.cpu_ms:>11.3f} {d.steal:>7.1f}"
        )


def compare(
    url: str, kinds: tuple[str, str], workers: int, args: argparse.Namespace, pg: Postgres | None
) -> dict[str, Drain]:
    runs: dict[str, list[Drain]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            insert_tasks(url, args.tasks)
            if pg:
                # Every drain leaves dead index entries at the head of the queue; start
                # each contender from the same clean table.
                pg.conn.execute("VACUUM ANALYZE entroq_task")
            runs[kind].append(drain(kind, url, workers, args.tasks, pg))
    return {k: median_drain(v) for k, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per run")
    parser.add_argument("--workers", default="2,4", help="worker process counts")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    # One worker count: more take the same paths.
    args = quick.parse_args(parser, {"tasks": 300, "repeats": 1, "workers": "2"})
    if args.worker:
        worker_main(args.worker, args.url)
        return

    from scripts.pgcluster import cluster

    worker_counts = [int(w) for w in args.workers.split(",")]
    print(
        f"EntroQ lifecycle benchmark: {args.tasks:,} tasks a run, {args.repeats} runs "
        f"each, {os.cpu_count()} CPUs{quick.note(args)}"
    )
    with cluster() as running:
        url = running.url
        migrate(url)
        pg = Postgres(url)
        inserts = [insert_tasks(url, args.tasks) for _ in range(args.repeats)]
        raw_inserts = [raw_insert_tasks(url, args.tasks) for _ in range(args.repeats)]
        pg.conn.execute("TRUNCATE entroq_task")
        ours, raw = statistics.median(inserts), statistics.median(raw_inserts)
        print("\nPostgreSQL 15, bulk insert (1,000 tasks a modification)")
        print(f"  entroq      {ours:>9,.0f} tasks/s   ratio {ours / raw:.2f}")
        print(f"  raw psycopg {raw:>9,.0f} tasks/s")
        for workers in worker_counts:
            result = compare(url, ("raw-psycopg", "entroq"), workers, args, pg)
            report(
                f"PostgreSQL 15, claim + delete, W = {workers} worker processes",
                [("raw psycopg", result["raw-psycopg"]), ("entroq", result["entroq"])],
                result["raw-psycopg"],
            )
        pg.conn.close()
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.sqlite3"
            migrate(url)
            for workers in worker_counts:
                result = compare(url, ("raw-sqlite3", "entroq"), workers, args, None)
                report(
                    f"SQLite (WAL), claim + delete, W = {workers} worker processes",
                    [("raw sqlite3", result["raw-sqlite3"]), ("entroq", result["entroq"])],
                    result["raw-sqlite3"],
                )


if __name__ == "__main__":
    main()
