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

from ..service.runtime import Services
from .auth import AUTH_CACHE, SERVICES, TENANT, TenantCache, auth_middleware
from .problems import REQUEST_ID, problem_middleware
from .routes import routes

__all__ = ["AUTH_CACHE", "REQUEST_ID", "SERVICES", "TENANT", "create_app"]


def create_app(services: Services) -> web.Application:
    """The API for ``services`` (request bodies up to ``service.max_body_bytes``)."""
    app = web.Application(client_max_size=services.settings.service.max_body_bytes,
                          middlewares=[problem_middleware, auth_middleware])
    app[SERVICES] = services
    app[AUTH_CACHE] = TenantCache()
    app.add_routes(routes)
    app.cleanup_ctx.append(_webhook_sender)
    app.cleanup_ctx.append(_dispatcher)
    return app


async def _webhook_sender(app: web.Application) -> AsyncIterator[None]:
    async with _running(app[SERVICES].webhooks):
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
