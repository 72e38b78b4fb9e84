"""The webhook sender: delivers the outbox (``webhook_events``) at least once, in order per call.

- An event is leased before it is sent (several nodes may run senders on one PostgreSQL), then
  POSTed with ``X-ARS-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`` made
  with the tenant's secret (:meth:`MasterKey.webhook_secret`); a new timestamp at each attempt.
- 2xx: delivered. Anything else (status, timeout, refused connection): retried with exponential
  backoff and jitter (:func:`~ars_engine.service.backoff.webhook_delay`) until the event is
  ``max_age`` old (24 h by default), then ``dead`` (listed by ``GET /v1/webhooks?status=dead``).
- Order: an event waits while an earlier event of its call is pending (repo.due_events); a dead
  event no longer blocks the ones after it.
- The receiver de-duplicates by the body's ``id``: a crash between its 2xx and our commit sends
  the event again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import aiohttp

from ..errors import ArsError
from ..store import repo
from ..store.models import DEAD, DELIVERED, PENDING, WebhookEvent
from .backoff import webhook_delay
from .logs import log_context
from .signing import HEADER, sign
from .tasks import finish_round

if TYPE_CHECKING:
    from .metrics import EngineMetrics
    from .runtime import Services

log = logging.getLogger("ars_engine.webhooks")
USER_AGENT = "ars-engine-webhooks/1"
SEND_TIMEOUT = 10.0
LEASE = timedelta(seconds=60)  # > SEND_TIMEOUT: a sender that died mid-POST frees its events


@dataclass(slots=True)
class SendResult:
    ok: bool
    status: int | None
    error: str | None


def signing_client(user_agent: str) -> aiohttp.ClientSession:
    """The HTTP client of a signed-notification sender (webhooks, alerts): one request at most
    ``SEND_TIMEOUT`` seconds."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT),
                                 headers={"User-Agent": user_agent})


async def post_signed(http: aiohttp.ClientSession, url: str, body: bytes, secret: str,
                      headers: dict[str, str] | None = None) -> SendResult:
    """POST ``body`` (JSON) with its ``X-ARS-Signature``; any 2xx is a delivery. Redirects are
    not followed (a signed body goes where it was addressed, nowhere else); a transport error
    becomes the result's ``error``, never an exception."""
    sent = {"Content-Type": "application/json",
            HEADER: sign(secret, body, int(time.time())), **(headers or {})}
    try:
        async with http.post(url, data=body, headers=sent, allow_redirects=False) as response:
            await response.read()
            if 200 <= response.status < 300:
                return SendResult(True, response.status, None)
            return SendResult(False, response.status, f"HTTP {response.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return SendResult(False, None, f"{type(exc).__name__}: {str(exc)[:200]}")


class WebhookSender:
    """Delivers due events; ``wake()`` after committing new ones. ``start()`` / ``stop()``."""

    def __init__(self, services: Services, *, node_id: str, concurrency: int = 16,
                 max_age: timedelta | None = None, poll_seconds: float | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        config = services.settings.service
        self.services = services
        self.node_id = node_id
        self.concurrency = concurrency
        self.max_age = max_age or timedelta(hours=config.webhook_max_age_hours)
        self.poll_seconds = poll_seconds or config.poll_seconds
        self.rand = rand
        self.delivered = 0
        self.dead = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # called once a round's results are committed (an observer re-reads the outbox then)
        self.on_write: Callable[[], None] = lambda: None
        # /metrics: delivery results (EngineMetrics.attach sets it)
        self.metrics: EngineMetrics | None = None
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """The HTTP client alone (``start()`` opens it too): enough for :meth:`run_once`
        rounds driven by the caller; ``stop()`` closes it."""
        if self._http is None:
            self._http = signing_client(USER_AGENT)

    async def start(self) -> None:
        await self.open()
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await finish_round(self._task, SEND_TIMEOUT + 1)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                sent = await self.run_once()
            except ArsError as exc:
                log.error("webhooks: %s", exc)
                sent = 0
            except Exception:  # never let the loop die: events would wait for another node
                log.exception("webhooks")
                sent = 0
            if sent:
                continue  # more may be due (the next event of each call)
            wait = self.poll_seconds
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def run_once(self) -> int:
        """Lease the due events, send them (concurrently across calls), record what happened;
        the number of events attempted."""
        store = self.services.store
        now = self.services.clock()
        async with store.session() as s, s.begin():
            events = list(await repo.due_events(s, now, self.concurrency,
                                                skip_locked=store.is_postgresql))
            for event in events:
                event.lease_owner = self.node_id
                event.lease_expires_at = now + LEASE
        if not events:
            return 0
        results = await asyncio.gather(*(self._send(e) for e in events))
        recorded: list[str | None] = []
        async with store.session() as s, s.begin():
            for event, result in zip(events, results, strict=True):
                with log_context(call_id=event.call_id, tenant=event.tenant_id):
                    recorded.append(await self._record(s, event.id, result))
        if self.metrics is not None:  # committed: count them
            for outcome in filter(None, recorded):
                self.metrics.webhook_delivery(outcome)
        self.on_write()
        return len(events)

    async def _send(self, event: WebhookEvent) -> SendResult:
        with log_context(call_id=event.call_id, tenant=event.tenant_id):
            return await self._post(event)

    async def _post(self, event: WebhookEvent) -> SendResult:
        assert self._http is not None
        return await post_signed(self._http, event.url, event.body.encode(),
                                 self.services.keys.webhook_secret(event.tenant_id),
                                 {"X-ARS-Event-Id": event.id, "X-ARS-Event-Type": event.type})

    async def _record(self, s: object, event_id: str, result: SendResult) -> str | None:
        """Store an attempt's result; what it was (delivered, failed, dead), None when the
        event was no longer ours to update."""
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(s, AsyncSession)
        event = await s.get(WebhookEvent, event_id, with_for_update=True)
        if event is None or event.status != PENDING:
            return None
        now = self.services.clock()
        event.attempts += 1
        event.last_status = result.status
        event.lease_owner = event.lease_expires_at = None
        if result.ok:
            event.status, event.delivered_at, event.last_error = DELIVERED, now, None
            self.delivered += 1
            return "delivered"
        event.last_error = result.error
        delay = timedelta(seconds=webhook_delay(event.attempts, self.rand()))
        if now + delay - event.created_at > self.max_age:
            event.status = DEAD
            self.dead += 1
            log.error("webhook %s for call %s dead after %d attempts: %s", event.id,
                      event.call_id, event.attempts, result.error)
            return "dead"
        event.next_attempt_at = now + delay
        log.warning("webhook %s for call %s: %s; attempt %d in %.0f s", event.id,
                    event.call_id, result.error, event.attempts + 1, delay.total_seconds())
        return "failed"

