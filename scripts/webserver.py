"""Serve the site as production does (gunicorn, debugging off) for tests and benchmarks.

::

    with serving(database_url) as base_url:
        ...  # http://127.0.0.1:<port>

The server collects its static files into a temporary folder, listens on a free
loopback port, and stops (its log printed if it failed) when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from scripts.pgcluster import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# What a production process needs: debugging off, a strong key, its hosts.
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SETTINGS_MODULE": "entroq_site.settings",
    "PYTHONPATH": str(ROOT),
}


def production_env(database_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, **PRODUCTION, "DATABASE_URL": database_url, **extra}


def manage(database_url: str, *args: str, **extra: str) -> str:
    """Run ``manage.py args`` as production would; return its standard output."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=production_env(database_url, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def serving(
    database_url: str, *, workers: int = 2, threads: int = 16, **extra: str
) -> Iterator[str]:
    """Yield the base URL of gunicorn serving the site on ``database_url``."""
    with tempfile.TemporaryDirectory(prefix="entroq-web-") as folder:
        env = production_env(database_url, DJANGO_STATIC_ROOT=f"{folder}/static", **extra)
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--no-input", "-v", "0"],
            env=env,
            cwd=ROOT,
            check=True,
        )
        port = free_port()
        log_path = Path(folder) / "gunicorn.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [
                    str(VENV_BIN / "gunicorn"),
                    "-c",
                    str(ROOT / "entroq_site" / "gunicorn.conf.py"),
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                    "entroq_site.wsgi",
                ],
                env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}"},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base, server, log_path)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within 60 s:\n{log.read_text()}")
