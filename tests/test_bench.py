"""Every benchmark of ``make bench`` and ``make bench-dashboard`` still runs to its table.

Each script runs in its quick mode (``--quick``: a few hundred tasks, a second or so
of load, once) as a command of its own, as the Makefile runs it, and must exit 0
having printed each row of its results. The figures are not checked: a quick run
measures nothing. The scripts start their own PostgreSQL clusters, so these tests
run once, in the PostgreSQL half of ``make test``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

FIGURE = r"[\d,.]+"

# The rows each script must print: its contenders with their figures, by line.
ROWS = {
    "lifecycle.py": [
        rf"^  entroq +{FIGURE} tasks/s +ratio {FIGURE}$",
        rf"^  raw psycopg +{FIGURE} tasks/s$",
        r"^PostgreSQL 15, claim \+ delete, W = 2 worker processes$",
        rf"^  raw psycopg +{FIGURE} +1\.00 ",
        r"^SQLite \(WAL\), claim \+ delete, W = 2 worker processes$",
        rf"^  raw sqlite3 +{FIGURE} +1\.00 ",
        rf"^  entroq +{FIGURE} +{FIGURE} ",
    ],
    "workers.py": [
        r"^  contender +tasks/s +x raw +CPU ms/task +commits/task +WAL B/task +steal %$",
        # tasks/s, ratio, CPU ms, commits and WAL bytes a task, then steal (- if unknown).
        rf"^  raw psycopg, standard loop +{FIGURE} +1\.00( +{FIGURE}){{3}} +({FIGURE}|-)$",
        *(
            rf"^  {name} +{FIGURE}( +{FIGURE}){{4}} +({FIGURE}|-)$"
            for name in (
                "eqworker",
                "pgqueuer, batch 1",
                "pgqueuer, batch 10",
                "procrastinate",
                "django-tasks-db db_worker",
                "eqworker --django-tasks",
            )
        ),
        # Measured once eqworker has --prefetch.
        *(
            rf"^  {name} +({FIGURE}( +{FIGURE}){{4}} +({FIGURE}|-)|n/a \(no --prefetch yet\))$"
            for name in ("eqworker --prefetch 10", "eqworker --django-tasks --prefetch 10")
        ),
        # Through the HTTP API of a gunicorn on the same cluster, with its CPU apart.
        *(
            rf"^  {name} +{FIGURE}( +{FIGURE}){{4}} +({FIGURE}|-)$"
            for name in ("eqworker --url", "eqworker --url --prefetch 10")
        ),
        r"^  --url rows: CPU ms/task is the eqworker processes' only, not the HTTP server's;$",
        *(
            rf"^  gunicorn's CPU ms/task beside {name}: ({FIGURE} |unknown)"
            for name in ("eqworker --url", "eqworker --url --prefetch 10")
        ),
        rf"^  django-tasks-db +{FIGURE} calls/s +x django-tasks-db +1\.00$",
        rf"^  EntroQBackend +{FIGURE} calls/s +x django-tasks-db +{FIGURE}$",
        r"^  eqworker / raw loop +[\d.]+ +target 0\.85 +(met|not met)$",
        r"^  eqworker --url --prefetch 10 / eqworker \(in-process, one at a time\) +[\d.]+ "
        r"+target 1\.00 +(met|not met)$",
        r"^No task lost or run twice",
    ],
    "http_api.py": [
        rf"^  in-process +{FIGURE} +1\.00 ",
        rf"^  HTTP +{FIGURE} +{FIGURE} ",
        r"^HTTP API under load, 8 clients, steady$",
        r"^HTTP API under load, 8 clients, with a PostgreSQL restart midway$",
        # Once a load run, so twice.
        r"(?s)nothing lost, nothing finished twice.*nothing lost, nothing finished twice",
    ],
    "listing_memory.py": [
        rf"^  one GET /api/v1/tasks +{FIGURE} +{FIGURE} +{FIGURE} +{FIGURE} +{FIGURE}$",
        rf"^  every page, HTTPBackend.tasks +3 +{FIGURE} +{FIGURE} +{FIGURE} +{FIGURE}$",
    ],
    "dashboard.py": [
        rf"^{page} +{FIGURE} +{FIGURE} +{FIGURE}  200$"
        for page in (
            "overview, first view",
            "overview, a period old",
            "overview, shared stats",
            "queue page, deep, older",
            "queue page, deep, newer",
            "task page",
            "claims view",
            "triage of the error queue",
            "API stats, by prefix",
            "API stats, by name",
        )
    ],
}


@pytest.mark.postgres
@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", ROWS)
def test_the_quick_mode_runs_to_its_table(script: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        # As in a clean clone: no static files collected by an earlier `make serve`.
        "DJANGO_STATIC_ROOT": str(tmp_path / "no-static-files"),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    print(done.stdout)  # its tables, for -s or -rP
    output = f"{done.stdout}\n--- stderr ---\n{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    assert "(quick run:" in done.stdout.partition("\n")[0], output
    missing = [row for row in ROWS[script] if not re.search(row, done.stdout, re.MULTILINE)]
    assert not missing, f"rows not printed: {missing}\n{output}"
