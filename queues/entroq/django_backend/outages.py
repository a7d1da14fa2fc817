"""Outages: ``DatabaseUnavailable``, which errors say the database cannot be used now,
and ``reconnecting``, which turns them into that error and a fresh connection.

Apart from the backend so that the classification, which every method of it relies
on, reads in one place; it goes by the error, whichever database raised it.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable
from typing import Concatenate, Protocol

from django.db import Error, InterfaceError, OperationalError, connections

from ..errors import BackendUnavailable


class DatabaseUnavailable(BackendUnavailable, OperationalError):
    """The database dropped this thread's connection, or cannot be reached: try later.

    Both a ``BackendUnavailable`` (what every backend raises in an outage) and Django's
    ``OperationalError`` (what code written for Django catches).
    """


# What says the database cannot be used now, rather than that a statement is wrong:
# connection exceptions and insufficient resources (disk, memory, connections) by
# class; a session the server ended (an administrator, a crash, a restart), a server
# that went read-only (a failover), and conflicts that retries did not get past.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "25006", "40001", "40P01"}


def is_outage(error: Error) -> bool:
    """Return whether ``error`` says the database cannot be used now, rather than that
    a statement failed.

    PostgreSQL: a sqlstate of ``UNAVAILABLE_SQLSTATE_CLASSES`` or
    ``UNAVAILABLE_SQLSTATES``, or none at all (the connection broke, or never opened:
    every error the server reports has one). SQLite: busy or locked past its busy
    timeout.
    """
    if isinstance(error, InterfaceError):
        return True
    cause = error.__cause__
    if isinstance(cause, sqlite3.Error):
        return str(getattr(cause, "sqlite_errorname", "")).startswith(
            ("SQLITE_BUSY", "SQLITE_LOCKED")
        )
    sqlstate = getattr(cause, "sqlstate", None)
    return (
        sqlstate is None
        or sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES)
        or sqlstate in UNAVAILABLE_SQLSTATES
    )


class OnDatabase(Protocol):
    """What ``reconnecting`` needs of the object whose method it wraps."""

    @property
    def using(self) -> str:
        """The alias of the database the method uses."""
        ...


def reconnecting[B: OnDatabase, **P, R](
    method: Callable[Concatenate[B, P], R],
) -> Callable[Concatenate[B, P], R]:
    """Make ``method`` raise ``DatabaseUnavailable`` when the database cannot be used
    now, closing this thread's connection so that the next call connects anew.

    Django reconnects only between requests; a worker's thread has none. Inside the
    caller's transaction the connection is the caller's to deal with: the error goes
    to them as it came.
    """

    @functools.wraps(method)
    def wrapper(backend: B, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(backend, *args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            connection = connections[backend.using]
            if (
                isinstance(error, DatabaseUnavailable)
                or connection.in_atomic_block
                or not is_outage(error)
            ):
                raise
            with contextlib.suppress(Error):
                connection.close()
            raise DatabaseUnavailable(f"the database is unavailable: {error}") from error

    return wrapper
