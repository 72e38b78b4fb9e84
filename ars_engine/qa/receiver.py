"""A verification service's webhook endpoint for QA and the demo: checks each signature
(``X-ARS-Signature``), de-duplicates events by id, counts deliveries, and lets a caller await a
call's terminal event. ``async with WebhookReceiver(secret) as hooks: … hooks.url``."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any, Self

from aiohttp import web

from ..service.signing import HEADER, SignatureError, verify

TERMINAL_EVENTS = ("call.finished", "call.failed", "call.canceled")


class LoopbackEndpoint:
    """One POST route on 127.0.0.1:``port`` (0: a free one, then kept, so ``stop()`` and
    ``start()`` again refuse and serve at the same URL). Subclasses answer in ``_receive``."""

    def __init__(self, route: str, *, port: int = 0) -> None:
        self.route = route
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.route, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _receive(self, request: web.Request) -> web.Response:
        raise NotImplementedError


class WebhookReceiver(LoopbackEndpoint):
    """Listens on 127.0.0.1:``port`` (0: a free one) at ``path``; see the module docstring."""

    def __init__(self, secret: str, *, port: int = 0, path: str = "/webhooks") -> None:
        super().__init__(path, port=port)
        self.secret = secret
        self.path = path
        self.events: dict[str, dict[str, Any]] = {}  # event id → first accepted body
        self.deliveries = 0  # requests received, duplicates and bad signatures included
        self.bad_signatures = 0
        self.changed = asyncio.Event()  # set at each new event
        self._done: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def terminal(self, call_id: str) -> asyncio.Future[dict[str, Any]]:
        """Resolves with the call's first terminal event (finished, failed, canceled)."""
        if call_id not in self._done:
            self._done[call_id] = asyncio.get_running_loop().create_future()
        return self._done[call_id]

    def terminal_per_call(self) -> Counter[str]:
        """How many distinct terminal events each call got (exactly one is right)."""
        return Counter(e["call"]["id"] for e in self.events.values()
                       if e["type"] in TERMINAL_EVENTS)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.deliveries += 1
        try:
            verify(self.secret, request.headers.get(HEADER, ""), body, now=time.time())
        except SignatureError:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        event = json.loads(body)
        if event["id"] not in self.events:
            self.events[event["id"]] = event
            self.changed.set()
            if event["type"] in TERMINAL_EVENTS:
                future = self.terminal(event["call"]["id"])
                if not future.done():
                    future.set_result(event)
        return web.Response(status=204)
