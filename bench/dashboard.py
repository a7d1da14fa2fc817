"""The dashboard's pages at scale: 1,000,000 tasks in 1,000 queues on PostgreSQL.

Builds the data set in a throwaway cluster at default durability (one queue of
500,000 tasks, its error queue of 100,000 failures of 208 kinds, and 400,000
tasks in 998 more queues, some claimed), then asks each page through Django's test
client in this process, as a logged-in superuser, and prints the median and p95
server time of each and the queries it ran. ``make bench-dashboard`` (``--quick``
checks in seconds that every page still answers, as ``make test`` does).

The pages run as production serves them: debugging off, and static files named
from the manifest of a ``collectstatic`` into a temporary folder, as
``scripts/webserver.py`` does (a checkout has no collected files of its own).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import quick  # noqa: E402
from scripts.pgcluster import cluster  # noqa: E402
from scripts.webserver import PRODUCTION, manage  # noqa: E402

BUILD = """
INSERT INTO entroq_task (id, queue, version, at, claimant, claims, value, created, modified,
                         attempt, err)
SELECT gen_random_uuid(), 'big', 0, now() - (n || ' seconds')::interval, NULL, 0,
       convert_to('{"order": ' || n || ', "customer": "c-' || (n %% 977) || '"}', 'UTF8'),
       now(), now(), 0, ''
FROM generate_series(1, %(big)s) n;

INSERT INTO entroq_task (id, queue, version, at, claimant, claims, value, created, modified,
                         attempt, err)
SELECT gen_random_uuid(), 'big/err', 0, now() - (n || ' seconds')::interval, NULL, 0,
       convert_to('{"task": {"queue": "big"}, "err": "failed"}', 'UTF8'),
       now() - (n || ' seconds')::interval, now(), 3,
       (ARRAY['timeout after 30 s talking to payments-api (request ' || n || ')',
              'card ' || n || '1234 declined',
              'HTTP 503 from inventory',
              'KeyError: ''sku''',
              'connection reset by peer at ' || to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS'),
              'image ' || n || '.jpg is truncated: expected 48213 bytes, got 1024',
              'quota exceeded for tenant ' || (n %% 50),
              'deadlock detected',
              'upstream returned 429',
              'validation failed: missing field email',
              'disk full on /var/spool/' || (n %% 7),
              'unknown error'])[1 + n %% 12]
FROM generate_series(1, %(errors)s) n;

INSERT INTO entroq_task (id, queue, version, at, claimant, claims, value, created, modified,
                         attempt, err)
SELECT gen_random_uuid(), 'queue-' || lpad((n %% 998)::text, 3, '0'), 0,
       CASE WHEN n %% 50 = 0 THEN now() + interval '5 minutes' ELSE now() - interval '1 hour' END,
       CASE WHEN n %% 50 = 0 THEN gen_random_uuid() END, (n %% 50 = 0)::int,
       '\\x7b7d'::bytea, now(), now(), 0, ''
FROM generate_series(1, %(rest)s) n;
VACUUM ANALYZE entroq_task;
"""


BEFORE_KINDS = ["queues", "0005_stats_snapshots"]


def build(url: str, big: int, errors: int, rest: int) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as db:
        for statement in BUILD.split(";\n"):
            if statement.strip():
                db.execute(statement, {"big": big, "errors": errors, "rest": rest})
    return time.perf_counter() - started


def vacuum(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE entroq_task")


def measure(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.db.models.functions import Now
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from queues import snapshots, tokens
    from queues.entroq import EntroQ
    from queues.models import StatsSnapshot
    from queues.views import encode_cursor

    user = User.objects.create_superuser("bench", email="")
    client = Client()
    client.force_login(user)
    eq = EntroQ()
    middle = eq.tasks("big", limit=1, after=None, newest_first=False)
    deep = eq.tasks("big", limit=args.big // 2)[-1] if middle else None
    some_task = middle[0]
    cursor = encode_cursor(deep) if deep else ""

    def first_stats() -> None:  # the first view after a start (or a long idle)
        StatsSnapshot.objects.all().delete()

    def stale_stats() -> None:  # a period has passed: stats are taken anew, apart
        while StatsSnapshot.objects.filter(stats__isnull=True).exists():
            time.sleep(0.05)  # the last request's snapshot, still being taken
        StatsSnapshot.objects.update(taken=Now() - timedelta(seconds=3))

    def fresh_stats() -> None:  # another viewer took them within the period
        snapshots.latest()
        StatsSnapshot.objects.filter(stats__isnull=False).update(taken=Now())

    _, token = tokens.create(user, "bench", [tokens.Grant.parse("=read")])
    api = {"Authorization": f"Bearer {token}"}
    pages: dict[str, tuple[str, Callable[[], object]]] = {
        "overview, first view": ("/", first_stats),
        "overview, a period old": ("/", stale_stats),
        "overview, shared stats": ("/", fresh_stats),
        "queue page, deep, older": (f"/queue/big?before={cursor}", fresh_stats),
        "queue page, deep, newer": (f"/queue/big?after={cursor}&order=newest", fresh_stats),
        "task page": (f"/tasks/{some_task.id}", fresh_stats),
        "claims view": ("/claims", fresh_stats),
        "triage of the error queue": ("/triage?queue=big/err", fresh_stats),
        # Ten queues of the 998 by prefix, against one of them by name: a prefix is a
        # range of the index, not a scan of it.
        "API stats, by prefix": ("/api/v1/stats?prefix=queue-01", fresh_stats),
        "API stats, by name": ("/api/v1/stats?exact=queue-010", fresh_stats),
    }
    print(f"\n{'page':<30} {'median ms':>10} {'p95 ms':>8} {'queries':>8}  status")
    for name, (path, prepare) in pages.items():
        times, counts, status = [], [], 0
        headers = api if path.startswith("/api/") else {}
        client.get(path, headers=headers)  # warm
        for _ in range(args.repeats):
            prepare()
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                times.append(1000 * (time.perf_counter() - started))
            counts.append(len(queries))
            status = response.status_code
        if status != 200:
            raise SystemExit(f"{name}: {path} answered {status}")
        times.sort()
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(
            f"{name:<30} {statistics.median(times):>10.1f} {p95:>8.1f} "
            f"{statistics.median(counts):>8.0f}  {status}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=500_000, help="tasks in the big queue")
    parser.add_argument("--errors", type=int, default=100_000, help="tasks in its error queue")
    parser.add_argument("--rest", type=int, default=400_000, help="tasks in 998 more queues")
    parser.add_argument("--repeats", type=int, default=15, help="requests a page")
    parser.add_argument(
        "--no-vacuum", action="store_true", help="measure right after the migration"
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = quick.parse_args(parser, {"big": 300, "errors": 100, "rest": 300, "repeats": 1})
    if args.measure:
        measure(args)
        return
    total = args.big + args.errors + args.rest
    print(f"Dashboard benchmark: {total:,} tasks, {os.cpu_count()} CPUs{quick.note(args)}")
    with cluster() as pg, tempfile.TemporaryDirectory(prefix="entroq-static-") as static:
        # Built before the error kinds exist, so their migration is timed on real data.
        manage(pg.url, "migrate", "--no-input", "-v", "0", *BEFORE_KINDS)
        print(f"built the data set in {build(pg.url, args.big, args.errors, args.rest):.0f} s")
        started = time.perf_counter()
        manage(pg.url, "migrate", "--no-input", "-v", "0")
        took = time.perf_counter() - started
        print(f"migrated, giving {args.errors:,} failures their error kinds, in {took:.0f} s")
        if not args.no_vacuum:
            vacuum(pg.url)  # as autovacuum would after the migration's updates
        # The manifest that production's static files storage names every file from.
        manage(pg.url, "collectstatic", "--no-input", "-v", "0", DJANGO_STATIC_ROOT=static)
        env = {
            **os.environ,
            **PRODUCTION,
            "DATABASE_URL": pg.url,
            "DJANGO_ALLOWED_HOSTS": "testserver",  # Django's test client
            "DJANGO_STATIC_ROOT": static,
        }
        forwarded = [f"--big={args.big}", f"--repeats={args.repeats}", "--measure"]
        sys.stdout.flush()  # our lines before the measuring process's, in a pipe too
        if subprocess.run([sys.executable, __file__, *forwarded], env=env).returncode:
            raise SystemExit("measuring the pages failed (its error is above)")


if __name__ == "__main__":
    main()
