"""The process's client of the task store, shared by the dashboard, the API and the admin."""

from __future__ import annotations

import functools

from queues.entroq import DjangoBackend, EntroQ


@functools.cache
def client() -> EntroQ:
    """Return this process's client over the Django database (one claimant ID)."""
    return EntroQ(DjangoBackend())
