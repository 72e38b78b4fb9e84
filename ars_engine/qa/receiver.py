"""A verification service's webhook endpoint for QA and the demo: checks each signature
(``X-ARS-Signature``), de-duplicates events by id, counts deliveries, and lets a caller await a
call's terminal event. ``async with WebhookReceiver(secret) as hooks: … hooks.url``."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

from ..service.signing import HEADER, SignatureError, verify

TERMINAL_EVENTS = ("call.finished", "call.failed", "call.canceled")


class WebhookReceiver:
    """Listens on 127.0.0.1:``port`` (0: a free one) at ``path``; see the module docstring."""

    def __init__(self, secret: str, *, port: int = 0, path: str = "/webhooks") -> None:
        self.secret = secret
        self.port = port
        self.path = path
        self.events: dict[str, dict[str, Any]] = {}  # event id → first accepted body
        self.deliveries = 0  # requests received, duplicates and bad signatures included
        self.bad_signatures = 0
        self.changed = asyncio.Event()  # set at each new event
        self._done: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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
