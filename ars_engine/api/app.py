"""The HTTP API application: ``create_app(services)``.

Middlewares, outermost first: problem+json errors and the request id (:mod:`.problems`), then
API keys (:mod:`.auth`). The routes are in :mod:`.routes`. The dispatcher and the webhook sender,
when the services have them, run for the app's lifetime (one ``cleanup_ctx`` each): the sender
starts first and stops last, so it still delivers while the dispatcher drains its calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from ..service.metrics import EngineMetrics
from ..service.runtime import Services
from .auth import AUTH_CACHE, SERVICES, TENANT, TenantCache, auth_middleware
from .health import METRICS, close_metrics, health_routes
from .problems import REQUEST_ID, problem_middleware
from .routes import routes

__all__ = ["AUTH_CACHE", "METRICS", "REQUEST_ID", "SERVICES", "TENANT", "create_app"]


def create_app(services: Services) -> web.Application:
    """The API for ``services`` (request bodies up to ``service.max_body_bytes``)."""
    app = web.Application(client_max_size=services.settings.service.max_body_bytes,
                          middlewares=[problem_middleware, auth_middleware])
    app[SERVICES] = services
    app[AUTH_CACHE] = TenantCache()
    app.add_routes(routes)
    app[METRICS] = EngineMetrics(services)  # hooks the dispatcher's and the sender's metrics
    app.add_routes(health_routes)
    app.cleanup_ctx.append(close_metrics)
    if services.settings.console.enabled:
        from ..console.app import console_app

        app.add_subapp("/console/", console_app(services))
        app.router.add_get("/console", _to_console)
    _notify_changes(services)
    app.cleanup_ctx.append(_webhook_sender)
    app.cleanup_ctx.append(_dispatcher)
    app.cleanup_ctx.append(_alert_monitor)
    return app


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


def _notify_changes(services: Services) -> None:
    """Wake the console's live page on this node's call writes (created, cancel, dispatcher)."""
    pulse = services.changes
    created = services.calls.on_created
    canceled = services.calls.on_cancel

    def on_created() -> None:
        created()
        pulse.notify()

    def on_cancel(call_id: str) -> object:
        result = canceled(call_id)
        pulse.notify()
        return result

    services.calls.on_created, services.calls.on_cancel = on_created, on_cancel
    dispatcher = services.dispatcher
    if dispatcher is not None:
        written = dispatcher.on_write

        def on_write() -> None:
            written()
            pulse.notify()

        dispatcher.on_write = on_write


async def _webhook_sender(app: web.Application) -> AsyncIterator[None]:
    async with _running(app[SERVICES].webhooks):
        yield


async def _alert_monitor(app: web.Application) -> AsyncIterator[None]:
    async with _running(app[SERVICES].alerts):
        yield


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    async with _running(app[SERVICES].dispatcher):
        yield


@asynccontextmanager
async def _running(worker: Any) -> AsyncIterator[None]:
    """``worker.start()`` … ``worker.stop()`` around the app's life; nothing for None."""
    if worker is None:
        yield
        return
    await worker.start()
    try:
        yield
    finally:
        await worker.stop()
