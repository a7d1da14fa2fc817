"""The ``--quick`` option every benchmark script has.

A quick run takes every path of the full one (each contender, each phase, each
table) on a few hundred tasks and a second or so of load, once: it proves in
seconds that the benchmark still works, and ``make test`` runs it
(``tests/test_bench.py``). Its figures measure nothing.
"""

from __future__ import annotations

import argparse
from typing import Any


def parse_args(parser: argparse.ArgumentParser, quick: dict[str, Any]) -> argparse.Namespace:
    """Parse the command line, taking ``quick`` as the defaults under ``--quick``.

    Options given on the command line win over the quick defaults, so that
    ``--quick --workers 4`` is a quick run with four workers.
    """
    shown = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in quick.items())
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a run of seconds that proves the benchmark works, measuring nothing ({shown})",
    )
    known, _ = parser.parse_known_args()
    if known.quick:
        parser.set_defaults(**quick)
    return parser.parse_args()


def note(args: argparse.Namespace) -> str:
    """Return what to add to a benchmark's heading: whether its figures mean anything."""
    return " (quick run: a check that the benchmark works, not a measurement)" if args.quick else ""
