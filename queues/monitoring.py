"""Health and metrics endpoints, for load balancers and Prometheus (no login; the
metrics need their own token)."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from queues import metrics
from queues.conf import app_settings

logger = logging.getLogger("queues.monitoring")

_migrated = False


@never_cache
@login_not_required
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Answer 200 while the process serves requests (it touches nothing else)."""
    return JsonResponse({"status": "ok"})


@never_cache
@login_not_required
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Answer 200 when the database answers and every migration is applied, else 503."""
    global _migrated
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as error:
        # The reason goes to the log, not to whoever asks: it names hosts and users.
        logger.warning("readyz: database unreachable: %s", error)
        checks["database"] = "unreachable"
    if checks["database"] == "ok" and not _migrated:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        _migrated = not pending  # once applied, they stay applied
        checks["migrations"] = "ok" if _migrated else f"{len(pending)} not applied"
    elif _migrated:
        checks["migrations"] = "ok"
    ready = all(value == "ok" for value in checks.values()) and "migrations" in checks
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


@never_cache
@login_not_required
@require_GET
def prometheus(request: HttpRequest) -> HttpResponse:
    """Serve the metrics in Prometheus's text format.

    They name every queue, so with ``METRICS_BEARER_TOKEN`` set they go only to
    requests with ``Authorization: Bearer <it>``; without one, only while debugging or
    with ``METRICS_ALLOW_ANONYMOUS``. A refusal says what to configure, and nothing of
    the queues.
    """
    expected = app_settings().METRICS_BEARER_TOKEN
    if expected:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            sent.strip().encode(), expected.encode()
        ):
            response = _refusal(
                401,
                "/metrics needs its token: send Authorization: Bearer <ENTROQ_METRICS_TOKEN>.",
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not settings.DEBUG and not app_settings().METRICS_ALLOW_ANONYMOUS:
        return _refusal(
            403,
            "/metrics is closed: it names every queue. Set ENTROQ_METRICS_TOKEN on the "
            "server and scrape with Authorization: Bearer <it>, or set "
            "ENTROQ_METRICS_ALLOW_ANONYMOUS=1 to open it to anyone who can reach it.",
        )
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def _refusal(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
