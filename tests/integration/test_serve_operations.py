"""``serve`` as operators run it, watched from outside: a fake trunk (the QA softphone, which
answers OPTIONS) goes down and comes back, and the engine says so everywhere at once: one signed
"firing" alert and one "resolved" to the alert webhook, ``/readyz`` 503 then 200 naming the
trunk, ``ars_trunk_up`` 0 then 1 in ``/metrics``. Nothing here
drives the alert monitor by hand: ``serve`` wires it (tests/integration/test_alerting.py tests
the monitor itself)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from ars_engine.config import Settings
from ars_engine.config_ops import AlertsConfig
from ars_engine.media.library import MediaLibrary
from ars_engine.qa.receiver import LoopbackEndpoint
from ars_engine.qa.softphone import Softphone, SoftphoneBehaviour
from ars_engine.service import signing
from ars_engine.service.alerting import alert_secret
from ars_engine.service.server import serve
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings

T1 = 0.02  # SIP T1 of the engine and the fake trunk: Timer F = 64·T1 = 1.28 s
WAIT = 15.0  # seconds a test awaits an event before failing


class Gateway(LoopbackEndpoint):
    """An SMS gateway stand-in: verifies the signature, queues each alert body."""

    def __init__(self, secret: str) -> None:
        super().__init__("/sms")
        self.secret = secret
        self.bodies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        signing.verify(self.secret, request.headers.get(signing.HEADER, ""), raw,
                       now=time.time())
        await self.bodies.put(await request.json())
        return web.Response(status=204)

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            return await self.bodies.get()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    key = secrets.token_hex(32)
    settings = Settings.from_env({"ARS_SECRET_KEY": key, "ARS_DATA_DIR": str(tmp_path)})
    hook = Gateway(alert_secret(settings.master_key()))
    await hook.start()
    hook.key = key  # type: ignore[attr-defined]
    try:
        yield hook
    finally:
        await hook.stop()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``serve`` configures the root logger (its handlers get the secret scrubber). pytest keeps
    one capture handler for the whole session, so undo that for the tests that follow (the
    secrets test checks what the code logs before any scrubbing)."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    filters = {handler: list(handler.filters) for handler in handlers}
    level = root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in filters:
                root.removeHandler(handler)
        for handler, kept in filters.items():
            handler.filters[:] = kept
        root.setLevel(level)
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.NOTSET)


async def ready_and_trunk(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, float]:
    async with http.get(f"{url}/readyz") as response:
        status, body = response.status, await response.json()
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    trunk_up = next(s.value for f in text_string_to_metric_families(text)
                    if f.name == "ars_trunk_up" for s in f.samples)
    return status, body, trunk_up


async def test_serve_alerts_when_the_trunk_goes_down_and_comes_back(
        gateway: Gateway, tmp_path: Path, tone_media: MediaLibrary) -> None:
    phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(), tmp_path / "heard", t1=T1)
    await phone.start()
    host, port = phone.address
    settings = Settings.from_env({"ARS_SECRET_KEY": gateway.key,  # type: ignore[attr-defined]
                                  "ARS_DATA_DIR": str(tmp_path / "var"),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    settings = dataclasses.replace(
        settings, alerts=AlertsConfig(url=gateway.url, interval_seconds=60.0),  # wakes only
        service=dataclasses.replace(settings.service, listen_port=0))
    sip = SipSettings(proxy=(host, port), keepalive=0.3, t1=T1)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    engine = asyncio.create_task(serve(settings, tone_media, lambda: EmbeddedBackend(sip),
                                       ready=ready.set_result, stop=stop))
    key = f"trunk_down:{host}:{port}"
    try:
        async with asyncio.timeout(60):
            url = await ready
        async with aiohttp.ClientSession() as http:
            await phone.close()  # the trunk goes away: OPTIONS go unanswered (Timer F)
            fired = await gateway.next()
            assert (fired["alert"], fired["state"]) == (key, "firing")
            assert fired["message"] == f"[ARS] 트렁크 응답 없음 / trunk down {host}:{port}"
            status, body, trunk_up = await ready_and_trunk(http, url)
            assert status == 503 and body["checks"]["backend"]["ok"] is False
            assert f"{host}:{port}" in body["checks"]["backend"]["detail"]
            assert trunk_up == 0.0

            phone = Softphone(("127.0.0.1", port), SoftphoneBehaviour(), tmp_path / "heard",
                              t1=T1)
            await phone.start()  # back on the same port
            resolved = await gateway.next()
            assert (resolved["alert"], resolved["state"]) == (key, "resolved")
            status, body, trunk_up = await ready_and_trunk(http, url)
            assert status == 200 and body["status"] == "ready", body
            assert trunk_up == 1.0
        assert gateway.bodies.empty()  # one message per change, nothing repeated
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await engine
        await phone.close()
