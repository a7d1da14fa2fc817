"""The task lifecycle over HTTP beside the in-process client, and the API under load.

Starts a throwaway PostgreSQL cluster at default durability and gunicorn serving the
site as production does (``scripts/webserver.py``), then:

1. claim-and-delete: W worker processes drain N tasks through ``HTTPBackend`` (two
   requests a task), beside W processes doing the same through ``DjangoBackend``
   in-process; contenders alternate, each figure is the median of the repeats;
2. load: C client threads claim and delete through the API for S seconds, reporting
   throughput and the p50/p99 time of a claim-and-delete, and checking that no task
   was lost or finished twice;
3. the same load while PostgreSQL restarts midway (``pg_ctl restart -m immediate``):
   clients fail cleanly, recover, and lose nothing.

Run with ``make bench`` (``HTTP_ARGS="--tasks 5000 --seconds 10"`` for a quick look;
``--quick`` checks in seconds that it works, as ``make test`` does).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import http_load, quick  # noqa: E402
from bench.lifecycle import Postgres, compare, report  # noqa: E402
from scripts.pgcluster import Cluster, cluster  # noqa: E402
from scripts.webserver import serving  # noqa: E402


def load_run(
    pg: Cluster, base: str, secrets: list[str], args: argparse.Namespace, fault: bool
) -> None:
    pg_url = pg.url
    # Enough tasks that the clients never run dry.
    inserted = http_load.insert(pg_url, args.load_tasks)
    restart = pg.restart if fault else None
    load = http_load.run(
        base, secrets, seconds=args.seconds, fault=restart, fault_after=args.seconds / 2
    )
    problems = http_load.check(load, inserted, http_load.remaining(pg_url))
    title = "with a PostgreSQL restart midway" if fault else "steady"
    print(f"\nHTTP API under load, {len(secrets)} clients, {title}")
    print(f"  {load.summary()}")
    print(f"  {problems or 'nothing lost, nothing finished twice'}")
    http_load.clear(pg_url)
    if problems:
        raise SystemExit("the load run lost or repeated tasks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per lifecycle run")
    parser.add_argument("--workers", type=int, default=4, help="lifecycle worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="lifecycle runs per contender")
    parser.add_argument("--clients", type=int, default=50, help="load client threads")
    parser.add_argument("--seconds", type=float, default=30, help="length of a load run")
    parser.add_argument("--load-tasks", type=int, default=60_000, help="tasks a load run")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
    # Load for 1.5 s before the restart and 1.5 s after it (less the restart itself).
    args = quick.parse_args(
        parser,
        {
            "tasks": 300,
            "workers": 2,
            "repeats": 1,
            "clients": 8,
            "seconds": 3,
            "load_tasks": 3000,
        },
    )
    print(
        f"EntroQ HTTP benchmark: {os.cpu_count()} CPUs, gunicorn {args.web_workers} "
        f"processes x {args.clients + 8} threads{quick.note(args)}"
    )
    with cluster() as pg:
        secrets, _ = http_load.prepare(pg.url, args.clients, 0)
        with serving(pg.url, workers=args.web_workers, threads=args.clients + 8) as base:
            os.environ["ENTROQ_BENCH_URL"] = base
            os.environ["ENTROQ_BENCH_TOKEN"] = secrets[0]
            db = Postgres(pg.url)
            result = compare(pg.url, ("entroq", "entroq-http"), args.workers, args, db)
            db.conn.close()
            report(
                f"PostgreSQL 15, claim + delete, W = {args.workers} worker processes",
                [("in-process", result["entroq"]), ("HTTP", result["entroq-http"])],
                result["entroq"],
            )
            load_run(pg, base, secrets, args, fault=False)
            load_run(pg, base, secrets, args, fault=True)


if __name__ == "__main__":
    main()
