"""Start a throwaway PostgreSQL cluster on a free loopback port.

Run a command against it::

    python scripts/pgcluster.py [--fast] -- pytest ...

The command sees ``DATABASE_URL`` pointing at a fresh database; the cluster is
stopped and its folder removed when the command ends, whatever the outcome.
PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user. Debian's ``postgresql`` package is installed when its
binaries are missing and we are root (as in CI).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "entroq"


def ensure_binaries() -> None:
    """Install Debian's PostgreSQL 15 server when it is missing and we are root."""
    if (PG_BIN / "initdb").exists():
        return
    if os.geteuid() != 0:
        sys.exit(f"PostgreSQL binaries not found in {PG_BIN}; install the 'postgresql' package.")
    print("pgcluster: installing PostgreSQL (apt-get install postgresql)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_owner(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the postgres user when we are root (from a folder it may enter)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass(frozen=True)
class Cluster:
    """A running cluster: the URL of its database, and its data folder."""

    url: str
    data: Path

    def restart(self) -> None:
        """Stop the server at once (dropping every connection) and start it again."""
        subprocess.run(
            as_owner(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "60",
                    "restart",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.data.parent,
        )


@contextlib.contextmanager
def cluster(*, fast: bool = False) -> Iterator[Cluster]:
    """Yield a database in a new cluster; stop and remove the cluster afterwards.

    ``fast`` turns durability off (fsync, synchronous commit): right for tests,
    wrong for benchmarks, which must measure the default configuration.
    """
    ensure_binaries()
    folder = Path(tempfile.mkdtemp(prefix="entroq-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    options = [
        "-c listen_addresses=127.0.0.1",
        f"-c port={port}",
        f"-c unix_socket_directories={folder}",
        "-c max_connections=200",
    ]
    if fast:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    try:
        subprocess.run(
            as_owner(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=folder,
        )
        started = subprocess.run(
            as_owner(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(folder / "log"),
                    "-o",
                    " ".join(options),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
            cwd=folder,
        )
        if started.returncode != 0:
            log = folder / "log"
            sys.stderr.write(log.read_text() if log.exists() else "(no server log)\n")
            raise SystemExit(f"pgcluster: PostgreSQL did not start on port {port}")
        try:
            subprocess.run(
                [
                    str(PG_BIN / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    DATABASE,
                ],
                check=True,
            )
            yield Cluster(f"postgres://postgres@127.0.0.1:{port}/{DATABASE}", data)
        finally:
            subprocess.run(
                as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
                cwd=folder,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="turn durability off (tests)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with cluster(fast=args.fast) as running:
        print(f"pgcluster: {running.url}", file=sys.stderr)
        env = {**os.environ, "DATABASE_URL": running.url}
        return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
