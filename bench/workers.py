"""Worker processes draining no-op tasks: eqworker beside the peers, in one run.

On a throwaway PostgreSQL cluster at default durability, W worker processes drain N
no-op tasks, for each contender in turn (each on its own tables, refilled and
vacuumed before its run):

- the standard raw loop, the reference for every ratio: psycopg 3, autocommit,
  automatic preparation, one ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)``
  claim and one ``DELETE`` a task, on a table ``t`` of its own (issue 13);
- ``manage.py eqworker --handler bench.handlers.noop --batch``, and the same with
  ``--prefetch 10`` (shown as n/a while eqworker has no such option), and the same
  again with 100 other queues paused (50 by name, 50 by prefix), what every claim
  checks its queue against (issue 14: within 5 %);
- the same two through the HTTP API (``eqworker --url BASE``, the token in
  ``ENTROQ_TOKEN``): BASE is gunicorn serving the site on the same cluster, started
  once for the run when these rows are chosen; their client CPU is the eqworker
  processes' only, the server's being given apart, under the table;
- pgqueuer (asyncpg) at batch size 1 and 10, its ``QueueManager`` in drain mode;
- procrastinate's ``manage.py procrastinate worker --one-shot``;
- django-tasks-db's ``manage.py db_worker --batch``;
- this project's ``django.tasks`` backend: ``manage.py eqworker --django-tasks --batch``
  (and ``--prefetch 10``); its N ``enqueue()`` calls in one ``transaction.atomic()``
  are timed beside django-tasks-db's.

Each worker process starts, imports and connects, says it is ready and waits; all are
then told to go at once. A drain is timed from the go to the last process's end of
work, and client CPU (user + system, every thread) is counted over the same span:
start-up is left out for every contender alike (it would be a sixth of pgqueuer's
figure at 20,000 tasks). Commits and WAL bytes come from the server's counters
(``pg_stat_database``, ``pg_stat_wal``); CPU steal from ``/proc/stat``. Every task is
counted: each job counts its runs in its process (``bench.handlers``), and a drain
fails if the sum is not N or any task is left unfinished.

The machine is noisy: compare ratios within one run and per-task costs, not rates
across runs. Run with ``make bench`` (``--quick`` checks in seconds that every
contender still runs, as ``make test`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import quick  # noqa: E402
from bench.lifecycle import Postgres, django_env, fmt, insert_tasks  # noqa: E402

QUEUE = "bench"
PEERS = ("django_tasks_db", "procrastinate", "pgqueuer", "asyncpg", "uvloop")
PGQ_ENTRYPOINT = "bench_noop"
DJANGO_TASKS_DONE = "django-tasks/bench/done"  # EntroQBackend's queue of finished calls

# The standard loop (issue 13, performance-notes.md), on a table of its own.
STANDARD_TABLE = """
CREATE TABLE t (
    id uuid PRIMARY KEY, version int NOT NULL, queue text NOT NULL,
    at timestamptz NOT NULL, created timestamptz NOT NULL, modified timestamptz NOT NULL,
    claimant uuid, value bytea NOT NULL, claims int NOT NULL
);
CREATE INDEX t_queue_at ON t (queue, at);
"""
STANDARD_CLAIM = (
    "WITH top AS (SELECT id FROM t WHERE queue = %s AND at <= now() LIMIT 1 "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE t SET version = version + 1, claims = claims + 1, "
    "at = now() + interval '30 seconds', claimant = %s, modified = now() "
    "FROM top WHERE t.id = top.id RETURNING t.id, t.version, t.value"
)
STANDARD_DELETE = "DELETE FROM t WHERE id = %s AND version = %s AND claimant = %s"


# Worker processes: set up, say ready, wait for the go, work, report.


class Clock:
    """The span of one worker process's work: wall clock and CPU from the go."""

    started = 0.0
    cpu = 0.0

    def go(self) -> None:
        """Say ready, wait for the go; from here on the process's output goes to its log."""
        print("ready", flush=True)
        sys.stdin.readline()
        os.dup2(2, 1)  # the parent reads nothing more from our standard output
        self.started = time.monotonic()
        self.cpu = cpu_seconds()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def standard_loop(url: str, clock: Clock) -> int:
    """Claim and delete with the standard statements until ``t`` is empty."""
    import psycopg

    me = uuid.uuid4()
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        clock.go()
        while True:
            row = conn.execute(STANDARD_CLAIM, (QUEUE, me)).fetchone()
            if row is None:
                if conn.execute("SELECT 1 FROM t LIMIT 1").fetchone() is None:
                    return done
                continue  # the last tasks are in other workers' hands
            done += conn.execute(STANDARD_DELETE, (row[0], row[1], me)).rowcount


def pgqueuer_worker(url: str, batch: int, clock: Clock) -> int:
    """Run pgqueuer's queue manager in drain mode: it exits once the queue is empty."""
    import asyncpg
    import uvloop
    from pgqueuer import PgQueuer
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    from bench import handlers

    async def work() -> None:
        conn = await asyncpg.connect(url)
        pgq = PgQueuer.from_asyncpg_connection(conn)

        @pgq.entrypoint(PGQ_ENTRYPOINT)
        async def noop(job: Job) -> None:
            handlers.tick()

        clock.go()
        await pgq.run(batch_size=batch, mode=QueueExecutionMode.drain)
        await conn.close()

    uvloop.run(work())
    return handlers.done()


def manage_worker(command: list[str], clock: Clock) -> int:
    """Run ``manage.py command`` in this process (its system checks left out)."""
    import django

    django.setup()
    from django.core.management import get_commands, load_command_class

    from bench import handlers

    name, *args = command
    cmd = load_command_class(get_commands()[name], name)
    # Before the subcommand, if any (procrastinate's).
    argv = ["manage.py", name, "--skip-checks", *args]
    clock.go()
    cmd.run_from_argv(argv)
    return handlers.done()


def worker_main(spec: dict[str, Any], url: str, result: str) -> None:
    clock = Clock()
    if spec["kind"] == "standard":
        done = standard_loop(url, clock)
    elif spec["kind"] == "pgqueuer":
        done = pgqueuer_worker(url, spec["batch"], clock)
    else:
        done = manage_worker(spec["command"], clock)
    ended = time.monotonic()
    cpu = cpu_seconds() - clock.cpu
    Path(result).write_text(
        json.dumps({"done": done, "cpu": cpu, "started": clock.started, "ended": ended})
    )


# The driver.


@dataclass(frozen=True)
class Contender:
    name: str
    queue: str  # which queue it drains: a key of FILL and LEFT
    worker: dict[str, Any]  # what each of its processes runs (worker_main's spec)
    needs: tuple[str, ...] = ()  # eqworker options it needs, shown as n/a while one is missing
    http: bool = False  # eqworker --url: through the HTTP API of the run's server

    @property
    def command(self) -> list[str]:
        return list(self.worker.get("command", []))


def eqworker(*args: str) -> dict[str, Any]:
    return {"kind": "manage", "command": ["eqworker", *args, "--batch"]}


HANDLER = ("--handler", "bench.handlers.noop", "--queue", QUEUE)
DJANGO_TASKS = ("--django-tasks", "--backend", "entroq", "--queue-name", QUEUE)
PREFETCH = ("--prefetch", "10")
HTTP = "eqworker --url"  # the in-process eqworker through the HTTP API
HTTP_PREFETCH = "eqworker --url --prefetch 10"
PAUSED = "eqworker, 100 other queues paused"
PAUSES = 100

CONTENDERS = [
    Contender("raw psycopg, standard loop", "standard", {"kind": "standard"}),
    Contender("eqworker", "entroq", eqworker(*HANDLER)),
    Contender("eqworker --prefetch 10", "entroq", eqworker(*HANDLER, *PREFETCH), ("--prefetch",)),
    Contender(PAUSED, "entroq-paused", eqworker(*HANDLER)),
    # drain() adds --url and the server's address to the command.
    Contender(HTTP, "entroq", eqworker(*HANDLER), ("--url",), http=True),
    Contender(
        HTTP_PREFETCH,
        "entroq",
        eqworker(*HANDLER, *PREFETCH),
        ("--url", "--prefetch"),
        http=True,
    ),
    Contender("pgqueuer, batch 1", "pgqueuer", {"kind": "pgqueuer", "batch": 1}),
    Contender("pgqueuer, batch 10", "pgqueuer", {"kind": "pgqueuer", "batch": 10}),
    Contender(
        "procrastinate",
        "procrastinate",
        {"kind": "manage", "command": ["procrastinate", "worker", "--queues", QUEUE, "--one-shot"]},
    ),
    Contender(
        "django-tasks-db db_worker",
        "django-tasks-db",
        {
            "kind": "manage",
            "command": [
                *("db_worker", "--backend", "db", "--queue-name", QUEUE),
                *("--batch", "--no-startup-delay"),
            ],
        },
    ),
    Contender("eqworker --django-tasks", "django-tasks", eqworker(*DJANGO_TASKS)),
    Contender(
        "eqworker --django-tasks --prefetch 10",
        "django-tasks",
        eqworker(*DJANGO_TASKS, *PREFETCH),
        ("--prefetch",),
    ),
]
REFERENCE = CONTENDERS[0].name

# What each queue leaves unfinished after a drain.
LEFT = {
    "standard": "SELECT count(*) FROM t",
    "entroq": "SELECT count(*) FROM entroq_task",
    "entroq-paused": "SELECT count(*) FROM entroq_task",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
    "django-tasks-db": (
        "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status <> 'SUCCESSFUL'"
    ),
    "django-tasks": f"SELECT count(*) FROM entroq_task WHERE queue <> '{DJANGO_TASKS_DONE}'",
}


@dataclass
class Run:
    rate: float
    cpu_ms: float
    commits: float
    wal_bytes: float
    steal: float | None
    server_cpu_ms: float | None = None  # the HTTP server's processes, for --url rows


@dataclass
class Bench:
    url: str
    pg: Postgres
    tasks: int
    workers: int
    enqueues: dict[str, list[float]] = field(default_factory=dict)
    server: Server | None = None  # for the --url rows


@dataclass(frozen=True)
class Server:
    """The run's gunicorn serving the site on the benchmark's cluster."""

    base: str
    token: str  # an API token of a superuser, granted everything on every queue
    master: int | None  # gunicorn's master process, if it could be found in /proc


def api_token(url: str) -> str:
    """Make a superuser with an API token granted everything; return its secret."""
    out = python(
        url,
        "from django.contrib.auth.models import User\n"
        "from queues import tokens\n"
        "user = User.objects.create_superuser('bench', email='')\n"
        "grants = [tokens.Grant.parse('=read,claim,insert,change,delete')]\n"
        "print(tokens.create(user, 'bench workers', grants)[1])\n",
    )
    return out.split()[-1]


def proc_stat(pid: int | str) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name, or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(entry.name)
            if stat and int(stat[1]) == parent:  # the fields from state: state, ppid, ...
                pids.append(int(entry.name))
    return pids


def gunicorn_master() -> int | None:
    """Find the gunicorn this process started (serving's child), or None."""
    for pid in children(os.getpid()):
        try:
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def server_cpu(master: int | None) -> float | None:
    """CPU seconds of gunicorn's processes so far (the reaped ones included), or None."""
    if master is None:
        return None
    stat = proc_stat(master)
    if stat is None:
        return None
    # utime, stime, cutime, cstime: fields 14 to 17 of stat, 12 to 15 after the name.
    ticks = sum(int(x) for x in stat[11:15])
    for pid in children(master):
        worker = proc_stat(pid)
        if worker:
            ticks += int(worker[11]) + int(worker[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def http_server(url: str, workers: int) -> Iterator[Server]:
    """Serve the site with gunicorn on ``url`` for the --url rows, for the whole run."""
    from scripts.webserver import serving

    token = api_token(url)
    # A thread a connection: each worker process holds up to three (worker, claims, acks).
    with serving(url, workers=2, threads=3 * workers + 4) as base:
        yield Server(base, token, gunicorn_master())


def env(url: str) -> dict[str, str]:
    return django_env(url, "bench.settings")


def python(url: str, code: str) -> str:
    """Run ``code`` in a Django process on the benchmark's settings; return its output."""
    done = subprocess.run(
        [sys.executable, "-c", "import django\ndjango.setup()\n" + code],
        env=env(url),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"failed:\n{code}\n{done.stderr[-2000:]}")
    return done.stdout


def manage(url: str, *args: str) -> str:
    """Run ``manage.py args``; exit with its errors if it fails."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env(url),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def pgqueuer_call(url: str, action: str, count: int = 0) -> None:
    """Install pgqueuer's schema, or enqueue ``count`` no-op jobs, through its own API."""
    import asyncpg
    from pgqueuer import Queries

    async def call() -> None:
        conn = await asyncpg.connect(url)
        try:
            queries = Queries.from_asyncpg_connection(conn)
            if action == "install":
                await queries.install()
            else:
                await queries.enqueue([PGQ_ENTRYPOINT] * count, [None] * count, [0] * count)
        finally:
            await conn.close()

    asyncio.run(call())


def enqueue_django_tasks(url: str, task: str, count: int) -> float:
    """Enqueue ``count`` calls of ``task`` in one ``transaction.atomic()``; return calls/s."""
    out = python(
        url,
        "import time\n"
        "from django.db import transaction\n"
        f"from bench.tasks import {task}\n"
        "started = time.perf_counter()\n"
        "with transaction.atomic():\n"
        f"    for _ in range({count}):\n"
        f"        {task}.enqueue()\n"
        "print(time.perf_counter() - started)\n",
    )
    return count / float(out.split()[-1])


def fill(bench: Bench, queue: str) -> None:
    """Empty the tables of ``queue`` and queue N no-op tasks in it."""
    conn, count = bench.pg.conn, bench.tasks
    if queue == "standard":
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(STANDARD_TABLE)
        conn.execute(
            "INSERT INTO t SELECT gen_random_uuid(), 0, %s, now(), now(), now(), NULL, "
            "'{}'::bytea, 0 FROM generate_series(1, %s)",
            (QUEUE, count),
        )
    elif queue in ("entroq", "entroq-paused", "django-tasks"):
        conn.execute("TRUNCATE entroq_task, entroq_paused")
        if queue == "entroq-paused":
            conn.execute(
                "INSERT INTO entroq_paused (name, prefix, paused_at) "
                "SELECT 'other/' || i || CASE WHEN i %% 2 = 0 THEN '/' ELSE '' END, "
                "i %% 2 = 0, now() FROM generate_series(1, %s) AS i",
                (PAUSES,),
            )
        if queue in ("entroq", "entroq-paused"):
            insert_tasks(bench.url, count)
        else:
            rate = enqueue_django_tasks(bench.url, "entroq_noop", count)
            bench.enqueues.setdefault("EntroQBackend", []).append(rate)
    elif queue == "pgqueuer":
        conn.execute("TRUNCATE pgqueuer, pgqueuer_log")
        pgqueuer_call(bench.url, "enqueue", count)
    elif queue == "procrastinate":
        conn.execute("TRUNCATE procrastinate_jobs CASCADE")
        python(
            bench.url,
            "from bench.tasks import procrastinate_noop\n"
            f"for start in range(0, {count}, 1000):\n"
            f"    n = min(1000, {count} - start)\n"
            "    procrastinate_noop.batch_defer(*({} for _ in range(n)))\n",
        )
    elif queue == "django-tasks-db":
        conn.execute("TRUNCATE django_tasks_database_dbtaskresult")
        rate = enqueue_django_tasks(bench.url, "db_noop", count)
        bench.enqueues.setdefault("django-tasks-db", []).append(rate)
    else:
        raise ValueError(queue)
    # Every contender starts from tables without dead rows and with fresh statistics.
    conn.execute("VACUUM ANALYZE")


def steal_jiffies() -> tuple[float, float] | None:
    """Return (total, steal) jiffies from /proc/stat, or None where it cannot be read."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return float(sum(fields)), float(fields[7] if len(fields) > 7 else 0)


def drain(bench: Bench, contender: Contender) -> Run:
    """Start W processes of ``contender``, let them drain its queue, and measure."""
    worker, environ = contender.worker, env(bench.url)
    if contender.http:
        assert bench.server is not None
        worker = {**worker, "command": [*contender.command, "--url", bench.server.base]}
        environ["ENTROQ_TOKEN"] = bench.server.token
    server = bench.server.master if bench.server and contender.http else None
    with tempfile.TemporaryDirectory(prefix="entroq-bench-") as folder:
        logs = [Path(folder) / f"worker{i}.log" for i in range(bench.workers)]
        results = [Path(folder) / f"worker{i}.json" for i in range(bench.workers)]
        procs = []
        for log, result in zip(logs, results, strict=True):
            with log.open("w") as stderr:
                procs.append(
                    subprocess.Popen(
                        [
                            *(sys.executable, __file__, "--url", bench.url),
                            *("--worker", json.dumps(worker), "--result", str(result)),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        text=True,
                        env=environ,
                        cwd=ROOT,
                    )
                )

        def failed(what: str, log: Path) -> SystemExit:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            return SystemExit(f"{contender.name}: {what}:\n{log.read_text()[-3000:]}")

        for proc, log in zip(procs, logs, strict=True):
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise failed("a worker failed to start", log)
        bench.pg.settle()
        commits0, wal0 = bench.pg.counters()
        steal0 = steal_jiffies()
        server0 = server_cpu(server)
        for proc in procs:
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
            proc.stdout.close()
        for proc, log in zip(procs, logs, strict=True):
            try:
                proc.wait(timeout=3600)
            except subprocess.TimeoutExpired:
                raise failed("a worker did not finish within the hour", log) from None
            if proc.returncode:
                raise failed(f"a worker exited with {proc.returncode}", log)
        steal1 = steal_jiffies()
        server1 = server_cpu(server)
        reports = [json.loads(result.read_text()) for result in results]
    bench.pg.settle()
    commits1, wal1 = bench.pg.counters()
    count = bench.tasks
    done = sum(r["done"] for r in reports)
    row = bench.pg.conn.execute(LEFT[contender.queue]).fetchone()
    left = int(row[0]) if row else -1
    if done != count or left:
        raise SystemExit(
            f"{contender.name}: its jobs ran {done:,} times for {count:,} tasks, and "
            f"{left:,} are left unfinished: "
            + ("some ran twice" if done > count else "tasks were lost or not finished")
        )
    elapsed = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    steal = None
    if steal0 and steal1:
        steal = 100 * (steal1[1] - steal0[1]) / max(steal1[0] - steal0[0], 1)
    return Run(
        rate=count / elapsed,
        cpu_ms=1000 * sum(r["cpu"] for r in reports) / count,
        commits=(commits1 - commits0) / count,
        wal_bytes=(wal1 - wal0) / count,
        steal=steal,
        server_cpu_ms=(
            1000 * (server1 - server0) / count
            if server0 is not None and server1 is not None
            else None
        ),
    )


def median(runs: list[Run]) -> Run:
    steals = [r.steal for r in runs if r.steal is not None]
    servers = [r.server_cpu_ms for r in runs if r.server_cpu_ms is not None]
    return Run(
        rate=statistics.median(r.rate for r in runs),
        cpu_ms=statistics.median(r.cpu_ms for r in runs),
        commits=statistics.median(r.commits for r in runs),
        wal_bytes=statistics.median(r.wal_bytes for r in runs),
        steal=max(steals) if steals else None,
        server_cpu_ms=statistics.median(servers) if servers else None,
    )


def eqworker_options(url: str) -> str:
    """Return ``manage.py eqworker --help``: which options this eqworker has."""
    return manage(url, "eqworker", "--help")


NAME = 38  # the width of the contenders' names
TARGET = 68  # of the targets'


def report(results: dict[str, Run | None], missing: dict[str, str]) -> None:
    reference = results[REFERENCE]
    assert reference is not None
    print(
        f"\n  {'contender':<{NAME}} {'tasks/s':>8} {'x raw':>6} {'CPU ms/task':>12} "
        f"{'commits/task':>13} {'WAL B/task':>11} {'steal %':>8}"
    )
    for contender in CONTENDERS:
        if contender.name not in results:
            continue  # left out by --only
        run = results[contender.name]
        if run is None:
            print(f"  {contender.name:<{NAME}} n/a (no {missing[contender.name]} yet)")
            continue
        print(
            f"  {contender.name:<{NAME}} {run.rate:>8,.0f} {run.rate / reference.rate:>6.2f} "
            f"{run.cpu_ms:>12.3f} {run.commits:>13.2f} {run.wal_bytes:>11,.0f} "
            f"{fmt(run.steal, '>8.1f')}"
        )
    http = [c for c in CONTENDERS if c.http and results.get(c.name)]
    if http:
        print(
            "  --url rows: CPU ms/task is the eqworker processes' only, not the HTTP server's;\n"
            "  commits/task and WAL B/task are the database's, the server's work included."
        )
        for contender in http:
            run = results[contender.name]
            assert run is not None
            print(
                f"  gunicorn's CPU ms/task beside {contender.name}: "
                + (
                    f"{run.server_cpu_ms:.3f} (its processes' /proc/<pid>/stat)"
                    if run.server_cpu_ms is not None
                    else "unknown (no /proc)"
                )
            )


def report_enqueue(enqueues: dict[str, list[float]], tasks: int) -> None:
    if not enqueues:
        return  # neither django.tasks contender ran (--only)
    print(f"\ndjango.tasks enqueue: {tasks:,} calls in one transaction.atomic()")
    theirs = enqueues.get("django-tasks-db")
    for name, rates in enqueues.items():
        rate = statistics.median(rates)
        vs = f"  x django-tasks-db {rate / statistics.median(theirs):>5.2f}" if theirs else ""
        print(f"  {name:<{NAME}} {rate:>8,.0f} calls/s{vs}")


def report_targets(results: dict[str, Run | None], enqueues: dict[str, list[float]]) -> None:
    """The targets of issues 13 and 14, as ratios measured in this run."""

    def rate(name: str) -> float | None:
        run = results.get(name)
        return run.rate if run else None

    enqueue = {k: statistics.median(v) for k, v in enqueues.items()}
    targets: list[tuple[str, float | None, float | None, float]] = [
        ("eqworker / raw loop", rate("eqworker"), rate(REFERENCE), 0.85),
        (f"{PAUSED} / eqworker (issue 14)", rate(PAUSED), rate("eqworker"), 0.95),
        (
            "eqworker --prefetch 10 / pgqueuer batch 10",
            rate("eqworker --prefetch 10"),
            rate("pgqueuer, batch 10"),
            1.0,
        ),
        (
            "eqworker --url --prefetch 10 / eqworker (in-process, one at a time)",
            rate(HTTP_PREFETCH),
            rate("eqworker"),
            1.0,
        ),
        (
            "eqworker --django-tasks (the faster) / db_worker",
            max(
                (r for r in (rate("eqworker --django-tasks"), rate(CONTENDERS[-1].name)) if r),
                default=None,
            ),
            rate("django-tasks-db db_worker"),
            5.0,
        ),
        (
            "django.tasks enqueue / django-tasks-db",
            enqueue.get("EntroQBackend"),
            enqueue.get("django-tasks-db"),
            2.0,
        ),
    ]
    print("\nTargets of issues 13 and 14 (W = 2), ratios of this run")
    for label, ours, theirs, target in targets:
        if ours is None or theirs is None:
            print(f"  {label:<{TARGET}} {'n/a':>6}   target {target:.2f}")
            continue
        ratio = ours / theirs
        verdict = "met" if ratio >= target else "not met"
        print(f"  {label:<{TARGET}} {ratio:>6.2f}   target {target:.2f}   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks a drain (N)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (W)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each contender")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only the contenders whose names contain this, or only the one so named "
        "(repeat; the raw loop, the reference, always runs)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = quick.parse_args(parser, {"tasks": 300, "repeats": 1})
    if args.worker:
        worker_main(json.loads(args.worker), args.url, args.result)
        return

    missing_peers = [p for p in PEERS if importlib.util.find_spec(p) is None]
    if missing_peers:
        raise SystemExit(
            f"the peers {', '.join(missing_peers)} are missing: install the bench extra "
            "(make install, or pip install -e '.[bench]')"
        )

    from scripts.pgcluster import cluster

    print(
        f"Worker benchmark: {args.tasks:,} no-op tasks, W = {args.workers} worker processes, "
        f"{args.repeats} run(s) each, {os.cpu_count()} CPUs{quick.note(args)}"
    )
    with cluster() as running:
        url = running.url
        manage(url, "migrate", "--no-input")
        pgqueuer_call(url, "install")
        options = eqworker_options(url)
        missing = {
            c.name: lacking[0]
            for c in CONTENDERS
            if (lacking := [o for o in c.needs if o not in options])
        }
        names = {c.name for c in CONTENDERS}
        chosen = [
            c
            for c in CONTENDERS
            if c.name == REFERENCE
            or not args.only
            or any(o == c.name or (o not in names and o in c.name) for o in args.only)
        ]
        bench = Bench(url, Postgres(url), args.tasks, args.workers)
        serve = any(c.http and c.name not in missing for c in chosen)
        server: contextlib.AbstractContextManager[Server | None] = (
            http_server(url, args.workers) if serve else contextlib.nullcontext()
        )
        runs: dict[str, list[Run]] = {c.name: [] for c in CONTENDERS}
        steal_at_start = steal_jiffies()
        with server as bench.server:
            for _ in range(args.repeats):
                for contender in chosen:
                    if contender.name in missing:
                        continue
                    print(f"  ... {contender.name}", file=sys.stderr, flush=True)
                    fill(bench, contender.queue)
                    runs[contender.name].append(drain(bench, contender))
        steal_at_end = steal_jiffies()
        bench.pg.conn.close()
    results = {c.name: median(runs[c.name]) if runs[c.name] else None for c in chosen}
    report(results, missing)
    report_enqueue(bench.enqueues, args.tasks)
    report_targets(results, bench.enqueues)
    if steal_at_start and steal_at_end:
        total = steal_at_end[0] - steal_at_start[0]
        steal = 100 * (steal_at_end[1] - steal_at_start[1]) / max(total, 1)
        print(f"\nCPU steal over the whole benchmark: {steal:.1f} %")
    else:
        print("\nCPU steal: unknown (/proc/stat cannot be read)")
    print(
        "No task lost or run twice: every contender's processes ran each of its "
        f"{args.tasks:,} tasks once."
    )


if __name__ == "__main__":
    main()
