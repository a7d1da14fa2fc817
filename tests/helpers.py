"""Helpers for tests that start real processes against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.db import connection

from scripts.webserver import PRODUCTION

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """Return a ``DATABASE_URL`` for the database the running test uses."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    auth = quote(settings["USER"], safe="")
    if settings["PASSWORD"]:
        auth += ":" + quote(settings["PASSWORD"], safe="")
    host = quote(settings["HOST"], safe="")  # a socket folder is a path
    return f"postgres://{auth}@{host}:{settings['PORT']}/{quote(settings['NAME'], safe='')}"


@contextmanager
def task_table_locked() -> Iterator[None]:
    """Hold an exclusive lock on the task table from another connection (PostgreSQL).

    It stands in for a table too large to read in time: every query of it waits.
    """
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as other, other.transaction():
        other.execute("LOCK TABLE entroq_task IN ACCESS EXCLUSIVE MODE")
        yield


def subprocess_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "entroq_site.settings",
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def start_python(code: str, **extra: str) -> subprocess.Popen[str]:
    """Start ``python -c code`` with Django set up on the test database."""
    setup = "import django; django.setup()\n"
    return subprocess.Popen(
        [sys.executable, "-c", setup + code],
        env=subprocess_env(**extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_manage(*args: str, **extra: str) -> subprocess.Popen[str]:
    """Start ``manage.py args`` on the test database; output is text, stderr apart."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=subprocess_env(**{**PRODUCTION, **extra}),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
