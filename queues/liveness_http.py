"""A worker's beats over the HTTP API (``POST workers/beat``), for ``eqworker --url``:
a worker there has a token, not database credentials."""

from __future__ import annotations

from typing import Any

from queues.entroq.http_backend import HTTPBackend
from queues.liveness import Announcement, Pulse


class HttpBeats:
    """Beats sent to the API at ``url`` as the holder of ``token``; the server records
    them with ``queues.liveness``, announcing the worker at its first."""

    def __init__(self, url: str, token: str) -> None:
        # A client of its own, with short timeouts: a slow server delays a beat, not
        # the workers' requests.
        self._api = HTTPBackend(url, token=token, timeout=5.0, retries=1, pool_size=1)

    def announce(self, worker: Announcement, pulse: Pulse) -> None:
        self._send(worker, pulse)

    def beat(self, worker: Announcement, pulse: Pulse) -> bool:
        return bool(self._send(worker, pulse).get("stop"))

    def exited(self, worker: Announcement, pulse: Pulse) -> None:
        self._send(worker, pulse, exited=True)

    def release(self) -> None:
        pass  # the pool keeps its connection for the next beat

    def _send(self, worker: Announcement, pulse: Pulse, *, exited: bool = False) -> Any:
        body = beat_body(worker, pulse)
        if exited:
            body["exited"] = True
        return self._api.call("POST", "/workers/beat", body=body)


def beat_body(worker: Announcement, pulse: Pulse) -> dict[str, Any]:
    """Return the JSON body of a beat (the API's ``workers/beat``)."""
    return {
        "id": str(worker.id),
        **worker.described(),
        "done": pulse.done,
        "failed": pulse.failed,
        "holding": pulse.holding,
        "held": [str(id) for id in pulse.held],
    }
