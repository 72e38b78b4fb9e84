"""``GET /metrics``, ``GET /healthz`` and ``GET /readyz``: outside ``/v1``, so without an API key.

- ``/healthz`` (liveness): 200 ``{"status": "ok"}`` while the process serves HTTP; it reads
  nothing, so a slow database never gets a live engine restarted.
- ``/readyz`` (readiness): 200 when the store answers ``SELECT 1`` within 2 s, its migrations
  are at head, the dispatcher is not draining and no backend link is known to be down; else 503.
  The body names each check: ``{"status", "checks": {name: {"ok", "detail"}}}``.
- ``/metrics``: Prometheus text format 0.0.4 (:class:`~ars_engine.service.metrics.EngineMetrics`).

Nothing here needs or shows a secret, but the metrics and the readiness details describe the
deployment (trunk address, queue sizes): serve them on a private network (docs/observability.md).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import text

from ..errors import StoreError
from ..service.health import backend_health
from ..service.metrics import EngineMetrics
from .auth import SERVICES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..service.runtime import Services

__all__ = ["METRICS", "Check", "close_metrics", "health_routes", "migrations_head", "readiness"]

METRICS = web.AppKey("metrics", EngineMetrics)
health_routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check's result."""

    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


@functools.cache
def migrations_head() -> str | None:
    """The newest revision of the shipped migrations (read once per process)."""
    from alembic.script import ScriptDirectory

    from ..store.db import MIGRATIONS

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def _probe(session: Session) -> str | None:
    """``SELECT 1`` and the database's migration revision, in one unit of work."""
    from alembic.runtime.migration import MigrationContext

    session.execute(text("SELECT 1"))
    return MigrationContext.configure(session.connection()).get_current_revision()


async def readiness(services: Services, metrics: EngineMetrics) -> dict[str, Check]:
    """Every readiness check by name: database, migrations, dispatcher, backend."""
    checks: dict[str, Check] = {}
    head = migrations_head()
    try:
        revision = await metrics.ready_query.run(services.store, _probe)
    except StoreError as exc:
        checks["database"] = Check(False, str(exc))
        checks["migrations"] = Check(False, "unknown: the database did not answer")
    else:
        checks["database"] = Check(True, "answered SELECT 1")
        checks["migrations"] = Check(revision == head, f"at {revision}, head {head}")
    dispatcher = services.dispatcher
    if dispatcher is None:
        checks["dispatcher"] = Check(True, "no dispatcher in this process")
    elif getattr(dispatcher, "draining", False):
        checks["dispatcher"] = Check(False, "draining: stopping, no new calls are taken")
    else:
        checks["dispatcher"] = Check(True, f"running {dispatcher.running} calls")
    health = backend_health(services.backend)
    down = health.down
    checks["backend"] = Check(not down, f"{health.backend}: " + (
        "down: " + "; ".join(down) if down else "no link known to be down"))
    return checks


@health_routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


@health_routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when every check passes, else 503; the checks in the body."""
    checks = await readiness(request.app[SERVICES], request.app[METRICS])
    ready = all(c.ok for c in checks.values())
    body = {"status": "ready" if ready else "not_ready",
            "checks": {name: c.as_dict() for name, c in checks.items()}}
    return web.json_response(body, status=200 if ready else 503,
                             headers={"Cache-Control": "no-store"})


@health_routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition of this node (the store's series read now)."""
    body = await request.app[METRICS].scrape(request.app[SERVICES])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                            "Cache-Control": "no-store"})


async def close_metrics(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: at the app's end, stop the store reads a scrape left running."""
    yield
    await app[METRICS].close()
