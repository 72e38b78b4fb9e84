"""``ars-engine serve``: the store (migrated), the scenario catalogue, a telephony backend, the
dispatcher, the webhook sender and the HTTP API in one process, stopped cleanly by SIGTERM or
SIGINT (running calls get ``SHUTDOWN_DRAIN_SECONDS`` to end; the rest are recovered as
``engine_restart`` by the next start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..store.db import Store
from .alerting import AlertMonitor
from .catalog import ScenarioCatalog
from .dispatcher import Dispatcher, default_node_id
from .nodes import NodeRegistry
from .runtime import Services
from .tuning import tune_runtime
from .webhooks import WebhookSender

if TYPE_CHECKING:
    from ..config import Settings
    from ..media.library import MediaLibrary

log = logging.getLogger("ars_engine.serve")


async def serve(settings: Settings, media: MediaLibrary,
                backend_factory: Callable[[], AbstractAsyncContextManager[Any]], *,
                host: str | None = None, port: int | None = None,
                ready: Callable[[str], None] = print,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or a SIGTERM/SIGINT arrives. ``ready`` gets the API's URL once
    it accepts requests."""
    from ..api.app import create_app
    from .logs import configure_logging

    # text or JSON lines (with call_id, tenant, request_id); live call secrets are masked in
    # every log line, whatever the code logs
    configure_logging(settings.service.log_format)
    config = settings.service
    store = Store(config.database_url)
    try:
        await store.upgrade()
        catalog = ScenarioCatalog.load(settings.root / "scenarios", media)
        for interpreter_name in catalog.scenarios:
            catalog.interpreter(interpreter_name).prerender()
        services = Services.build(settings, store, catalog)
        async with backend_factory() as backend:
            node_id = config.node_id or default_node_id()
            webhooks = WebhookSender(services, node_id=node_id)
            proxy = getattr(getattr(backend, "settings", None), "proxy", None)
            target = config.dial_target(config.backend, proxy[0] if proxy else None)
            registry = NodeRegistry(store, node_id, site=config.site,
                                    lease=timedelta(seconds=config.lease_seconds),
                                    key_id=services.keys.evidence_key_id)
            dispatcher = Dispatcher(services, backend, node_id=node_id, target=target,
                                    on_event=webhooks.wake, registry=registry)
            services.calls.on_created = dispatcher.wake
            services.calls.on_cancel = dispatcher.cancel
            services.dispatcher, services.webhooks = dispatcher, webhooks
            services.backend = backend
            services.alerts = AlertMonitor(services, node_id=node_id)
            app = create_app(services)
            tune_runtime()  # everything long-lived is loaded by now
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, host or config.listen_host,
                               config.listen_port if port is None else port)
            await site.start()
            try:
                bound = runner.addresses[0]
                ready(f"http://{bound[0]}:{bound[1]}")
                await _wait_for_stop(stop)
                log.info("stopping: draining running calls")
            finally:
                await runner.cleanup()
    finally:
        await store.close()


async def _wait_for_stop(stop: asyncio.Event | None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
