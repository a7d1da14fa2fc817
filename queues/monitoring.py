"""Health and metrics endpoints, for load balancers and Prometheus (no login)."""

from __future__ import annotations

import hmac
import logging

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from queues import conf, metrics

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
    """Serve the metrics in Prometheus's text format (to the holder of
    ``METRICS_BEARER_TOKEN``, when one is set: they name every queue)."""
    expected = conf.get("METRICS_BEARER_TOKEN")
    if expected:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            response = HttpResponse("send Authorization: Bearer <metrics token>\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
