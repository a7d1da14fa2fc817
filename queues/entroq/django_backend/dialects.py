"""Which ``Dialect`` serves a database: the registry by Django's vendor name.

Both ``DjangoBackend`` and ``statement_timeout`` look a database up here, so that
adding a database is a module and a line, and nothing else asks for a vendor.
"""

from __future__ import annotations

from django.db import connections

from .base import Dialect
from .postgresql import PostgresDialect
from .sqlite import SQLiteDialect

DIALECTS: dict[str, type[Dialect]] = {"postgresql": PostgresDialect, "sqlite": SQLiteDialect}


def dialect_for(using: str) -> Dialect:
    """Return a new dialect for the database ``using``; raise ``NotImplementedError``
    for a database EntroQ does not support (and ``ImproperlyConfigured`` for one
    configured so that EntroQ would not be correct on it)."""
    vendor = connections[using].vendor
    dialect = DIALECTS.get(vendor)
    if dialect is None:
        raise NotImplementedError(f"EntroQ supports PostgreSQL and SQLite, not {vendor}")
    return dialect(using)
