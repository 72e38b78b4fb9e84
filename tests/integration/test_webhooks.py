"""The webhook sender on a real store (SQLite and PostgreSQL) delivering to a real aiohttp receiver
on loopback that verifies every signature: what is sent and recorded, order per call, retries with
backoff while the receiver is down, dead letters, per-tenant secrets, leases between two nodes.

Rounds are driven with ``run_once()``; time moves by the service clock's offset, never by sleeping
through a backoff delay."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from ars_engine.config import Settings
from ars_engine.qa.receiver import LoopbackEndpoint
from ars_engine.service import signing
from ars_engine.service.backoff import webhook_delay
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.runtime import Services
from ars_engine.service.webhooks import WebhookSender
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import DEAD, DELIVERED, PENDING, Call, Tenant, WebhookEvent

TENANTS = ("bank", "card")
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WAIT = 10.0  # seconds a test awaits the receiver before failing
EVENT_TYPES = ("call.dialing", "call.answered", "call.finished")


class Clock:
    """The service's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance_past(self, moment: datetime) -> None:
        """Move on until ``moment`` has passed (a retry is due); never backwards."""
        self.offset += max(moment - self(), timedelta()) + timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request the receiver accepted (2xx), as it arrived."""

    tenant: str
    event_id: str
    header_event_id: str
    header_event_type: str
    signature: str
    raw: bytes


class Receiver(LoopbackEndpoint):
    """A verification service on 127.0.0.1: ``POST /hooks/<tenant>`` verifies the signature with
    that tenant's secret (401 otherwise), de-duplicates by the body's ``id`` and answers 200.
    ``answer`` makes it answer something else to every signed request; ``fail[event_id]`` makes
    it answer 503 that many more times to one event. ``stop()``/``start()`` keep the port, so a
    stopped receiver refuses connections at the URL the events carry."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        super().__init__("/hooks/{tenant}")
        self.secrets = dict(secrets)
        self.answer = 200
        self.fail: dict[str, float] = {}
        self.requests: Counter[str] = Counter()  # event id → signed requests seen (any answer)
        self.deliveries: list[Delivery] = []  # accepted, duplicates included
        self.bodies: dict[str, dict[str, Any]] = {}  # event id → first accepted body
        self.order: list[str] = []  # event ids in first-accepted order
        self.rejected: list[tuple[str, str]] = []  # (tenant, SignatureError.reason)
        self._arrived: dict[str, asyncio.Event] = {}

    def url(self, tenant: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{tenant}"

    def arrived(self, event_id: str) -> asyncio.Event:
        """Set when ``event_id`` is first accepted."""
        return self._arrived.setdefault(event_id, asyncio.Event())

    def accepted(self) -> Counter[str]:
        """Event id → how many times it was accepted (1 when nothing was sent twice)."""
        return Counter(d.event_id for d in self.deliveries)

    def sequences(self, call_id: str) -> list[int]:
        """The call's event sequence numbers in the order they were first accepted."""
        return [self.bodies[i]["sequence"] for i in self.order
                if self.bodies[i]["call"]["id"] == call_id]

    async def _receive(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        raw = await request.read()
        try:
            signing.verify(self.secrets[tenant], request.headers.get(signing.HEADER, ""), raw,
                           now=time.time())
        except signing.SignatureError as exc:
            self.rejected.append((tenant, exc.reason))
            return web.Response(status=401, text=exc.reason)
        body = json.loads(raw)
        event_id = body["id"]
        self.requests[event_id] += 1
        if self.answer != 200:
            return web.Response(status=self.answer)
        if self.fail.get(event_id, 0) > 0:
            self.fail[event_id] -= 1
            return web.Response(status=503)
        self.deliveries.append(Delivery(
            tenant, event_id, request.headers.get("X-ARS-Event-Id", ""),
            request.headers.get("X-ARS-Event-Type", ""), request.headers[signing.HEADER], raw))
        if event_id not in self.bodies:
            self.bodies[event_id] = body
            self.order.append(event_id)
            self.arrived(event_id).set()
        return web.Response(status=200, text="ok")


# -- fixtures --------------------------------------------------------------------------------------
def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"ARS_DATA_DIR": str(tmp_path / "var"),
                              "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})


@pytest.fixture
async def services(store: Store, tmp_path: Path) -> Services:
    svc = Services.build(_settings(tmp_path), store, ScenarioCatalog({}), clock=Clock())
    async with store.session() as s, s.begin():
        for tenant in TENANTS:
            s.add(Tenant(id=tenant, name=tenant.title(), created_at=T0, disabled=False,
                         allowed_scenarios=None, max_concurrent=10, per_number_limit=100,
                         per_number_window_s=3600, destination_rules={}))
    return svc


@pytest.fixture
def clock(services: Services) -> Clock:
    assert isinstance(services.clock, Clock)
    return services.clock


@pytest.fixture
async def receiver(services: Services) -> AsyncIterator[Receiver]:
    hooks = Receiver({t: services.keys.webhook_secret(t) for t in TENANTS})
    await hooks.start()
    try:
        yield hooks
    finally:
        await hooks.stop()


@asynccontextmanager
async def _sender(services: Services, node_id: str = "a",
                  **kwargs: Any) -> AsyncIterator[WebhookSender]:
    """A sender for ``run_once()`` rounds without its background loop (``start()`` would run a
    round of its own at once, racing the test's): ``open()`` makes only its HTTP client."""
    sender = WebhookSender(services, node_id=node_id, **kwargs)
    await sender.open()
    try:
        yield sender
    finally:
        await sender.stop()


@pytest.fixture
async def sender(services: Services) -> AsyncIterator[WebhookSender]:
    async with _sender(services) as s:
        yield s


# -- helpers ---------------------------------------------------------------------------------------
async def _call_with_events(services: Services, url: str, count: int = 1, *,
                            tenant: str = "bank", number: int = 1) -> tuple[str, list[str]]:
    """A call of ``tenant`` with ``callback_url=url`` and ``count`` outbox events (sequence 1…);
    its id and the events' ids in sequence order."""
    now = services.clock()
    call_id = repo.new_id("call")
    async with services.store.session() as s, s.begin():
        call = Call(id=call_id, tenant_id=tenant, scenario="code", scenario_sha256="0" * 64,
                    destination=f"+8210{number:08d}", params={}, callback_url=url,
                    retry_policy={}, attempts=0, not_before=now, created_at=now, updated_at=now,
                    next_event_seq=1)
        repo.add_call(s, call, now)
        events = [repo.add_event(s, call, EVENT_TYPES[i % len(EVENT_TYPES)],
                                 {"id": call_id, "step": i + 1}, now) for i in range(count)]
    ids = [e.id for e in events if e is not None]
    assert len(ids) == count
    return call_id, ids


async def _events(services: Services, ids: Sequence[str]) -> list[WebhookEvent]:
    async with services.store.session() as s:
        rows = {e.id: e for e in (await s.scalars(
            select(WebhookEvent).where(WebhookEvent.id.in_(ids)))).all()}
    return [rows[i] for i in ids]


async def _event(services: Services, event_id: str) -> WebhookEvent:
    return (await _events(services, [event_id]))[0]


async def _rounds(sender: WebhookSender) -> list[int]:
    """``run_once()`` until a round finds nothing due; what each round attempted."""
    attempted: list[int] = []
    while (n := await sender.run_once()) > 0:
        attempted.append(n)
        assert len(attempted) < 100, "the sender never runs dry"
    return attempted


# -- the tests -------------------------------------------------------------------------------------
async def test_delivered_event_is_signed_with_the_tenant_secret_and_recorded_as_delivered(
        services: Services, receiver: Receiver, sender: WebhookSender) -> None:
    call_id, [event_id] = await _call_with_events(services, receiver.url("bank"))
    before = services.clock()
    assert await sender.run_once() == 1
    after = services.clock()
    [delivery] = receiver.deliveries
    secret = services.keys.webhook_secret("bank")
    stamp = signing.verify(secret, delivery.signature, delivery.raw, now=time.time())
    assert abs(stamp - time.time()) < 60  # signed at the attempt, with real time
    body = json.loads(delivery.raw)
    assert set(body) == {"id", "type", "created_at", "sequence", "call"}
    assert (body["id"], body["type"], body["sequence"]) == (event_id, "call.dialing", 1)
    assert body["call"] == {"id": call_id, "step": 1}
    assert delivery.header_event_id == body["id"]
    assert delivery.header_event_type == body["type"]
    row = await _event(services, event_id)
    assert row.body.encode() == delivery.raw  # the exact stored bytes were signed and sent
    assert (row.status, row.attempts, row.last_status, row.last_error) == (DELIVERED, 1, 200,
                                                                           None)
    assert row.delivered_at is not None and before <= row.delivered_at <= after
    assert row.lease_owner is None and row.lease_expires_at is None
    assert sender.delivered == 1 and await sender.run_once() == 0


async def test_events_of_a_call_arrive_in_sequence_while_other_calls_proceed(
        services: Services, receiver: Receiver, sender: WebhookSender, clock: Clock) -> None:
    slow, slow_ids = await _call_with_events(services, receiver.url("bank"), 3, number=1)
    fast, fast_ids = await _call_with_events(services, receiver.url("bank"), 3, number=2)
    receiver.fail[slow_ids[0]] = 2  # the slow call's first event fails twice
    # One event per call per round: the fast call's three go out while the slow one waits.
    assert await _rounds(sender) == [2, 1, 1]
    assert receiver.sequences(fast) == [1, 2, 3] and receiver.sequences(slow) == []
    first, second, third = await _events(services, slow_ids)
    assert (first.status, first.attempts, first.last_status) == (PENDING, 1, 503)
    assert [(e.status, e.attempts) for e in (second, third)] == [(PENDING, 0)] * 2
    clock.advance_past(first.next_attempt_at)
    assert await _rounds(sender) == [1]  # it fails again; the later ones still wait
    first, second, third = await _events(services, slow_ids)
    assert [e.attempts for e in (first, second, third)] == [2, 0, 0]
    clock.advance_past(first.next_attempt_at)
    assert await _rounds(sender) == [1, 1, 1]  # delivered, then the next, then the last
    assert receiver.sequences(slow) == [1, 2, 3]
    assert receiver.order.index(fast_ids[-1]) < receiver.order.index(slow_ids[0])
    rows = await _events(services, slow_ids + fast_ids)
    assert [(e.status, e.attempts) for e in rows] == [(DELIVERED, 3)] + [(DELIVERED, 1)] * 5
    assert all(n == 1 for n in receiver.accepted().values())


async def test_receiver_down_then_503_then_up_gets_every_event_once_with_growing_backoff(
        services: Services, receiver: Receiver, sender: WebhookSender, clock: Clock) -> None:
    _, a_ids = await _call_with_events(services, receiver.url("bank"), 2, number=1)
    _, b_ids = await _call_with_events(services, receiver.url("bank"), 1, number=2)
    heads = [a_ids[0], b_ids[0]]
    await receiver.stop()  # connection refused
    previous: list[datetime] = []
    for attempt, answer in enumerate(("down", "down", 503, 503), start=1):
        if attempt == 3:  # back on the same port, but answering 503
            receiver.answer = 503
            await receiver.start()
        before = clock()
        assert await sender.run_once() == 2  # the two calls' first events; a_ids[1] waits
        after = clock()
        rows = await _events(services, heads)
        for row in rows:
            assert (row.status, row.attempts) == (PENDING, attempt)
            if answer == "down":
                assert row.last_status is None
                assert row.last_error and "connect" in row.last_error.lower(), row.last_error
            else:
                assert (row.last_status, row.last_error) == (503, "HTTP 503")
            # Equal jitter: between d/2 and d after the failure, d doubling per attempt.
            shortest = timedelta(seconds=webhook_delay(attempt, 0.0))
            assert row.next_attempt_at - before >= shortest
            assert row.next_attempt_at - after <= 2 * shortest
        assert all(r.next_attempt_at > p for r, p in zip(rows, previous, strict=False))
        previous = [r.next_attempt_at for r in rows]
        assert await sender.run_once() == 0  # nothing is due before its backoff is over
        clock.advance_past(max(previous))
    assert (await _event(services, a_ids[1])).attempts == 0
    receiver.answer = 200
    assert await _rounds(sender) == [2, 1]
    assert receiver.accepted() == Counter(dict.fromkeys(a_ids + b_ids, 1))
    assert receiver.requests == Counter({a_ids[0]: 3, b_ids[0]: 3, a_ids[1]: 1})
    rows = await _events(services, a_ids + b_ids)
    assert [(e.status, e.attempts, e.last_status, e.last_error) for e in rows] == [
        (DELIVERED, 5, 200, None), (DELIVERED, 1, 200, None), (DELIVERED, 5, 200, None)]


async def test_event_failing_for_24_hours_goes_dead_and_unblocks_the_next_of_its_call(
        services: Services, receiver: Receiver, sender: WebhookSender, clock: Clock) -> None:
    assert sender.max_age == timedelta(hours=24)
    _, (doomed, after) = await _call_with_events(services, receiver.url("bank"), 2)
    receiver.fail[doomed] = math.inf
    for _ in range(100):
        assert await sender.run_once() == 1  # only the doomed one: the next waits behind it
        row = await _event(services, doomed)
        if row.status != PENDING:
            break
        assert (await _event(services, after)).attempts == 0
        clock.advance_past(row.next_attempt_at)
    assert (row.status, row.last_status, row.last_error) == (DEAD, 503, "HTTP 503")
    assert row.lease_owner is None and row.delivered_at is None
    age = clock() - row.created_at
    assert timedelta(hours=23) < age <= timedelta(hours=24, seconds=1)  # retried for ~24 h
    assert 33 <= row.attempts <= 57  # backoff.webhook_delay's docstring: 41 on average
    assert receiver.requests[doomed] == row.attempts and sender.dead == 1
    assert await sender.run_once() == 1  # a dead event no longer blocks its call
    assert receiver.order == [after]
    assert (await _event(services, after)).status == DELIVERED
    assert await sender.run_once() == 0  # and a dead one is never retried


async def test_signature_made_with_another_tenants_secret_is_rejected(
        services: Services, receiver: Receiver, sender: WebhookSender) -> None:
    bank_secret, card_secret = (services.keys.webhook_secret(t) for t in TENANTS)
    assert bank_secret != card_secret
    _, [bank_event] = await _call_with_events(services, receiver.url("bank"), number=1)
    _, [card_event] = await _call_with_events(services, receiver.url("card"), tenant="card",
                                              number=2)
    # A card call whose callback points at the bank's endpoint: signed with the card's secret.
    _, [stray] = await _call_with_events(services, receiver.url("bank"), tenant="card",
                                         number=3)
    assert await sender.run_once() == 3
    assert sorted(receiver.order) == sorted([bank_event, card_event])
    assert {d.event_id: d.tenant for d in receiver.deliveries} == {bank_event: "bank",
                                                                   card_event: "card"}
    assert receiver.rejected == [("bank", "mismatch")]
    row = await _event(services, stray)
    assert (row.status, row.attempts, row.last_status) == (PENDING, 1, 401)
    raw = row.body.encode()
    header = signing.sign(card_secret, raw, int(time.time()))
    assert signing.verify(card_secret, header, raw, now=time.time())
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(bank_secret, header, raw, now=time.time())
    assert caught.value.reason == "mismatch"


async def test_two_senders_lease_events_so_none_is_sent_twice(
        services: Services, receiver: Receiver, store: Store, clock: Clock,
        tmp_path: Path) -> None:
    calls = [await _call_with_events(services, receiver.url("bank"), 2, number=n)
             for n in range(30)]
    all_ids = [i for _, ids in calls for i in ids]
    other_store = Store(store.url)  # the second node has its own engine and pool
    other = Services.build(_settings(tmp_path), other_store, ScenarioCatalog({}), clock=clock)
    assert other.keys.webhook_secret("bank") == services.keys.webhook_secret("bank")
    try:
        async with _sender(services, "a") as a, _sender(other, "b") as b:
            attempted = 0
            for _ in range(20):
                counts = await asyncio.gather(a.run_once(), b.run_once())
                assert receiver.accepted().most_common(1)[0][1] == 1, "an event was sent twice"
                attempted += sum(counts)
                if not any(counts):
                    break
            assert (a.delivered > 0, b.delivered > 0) == (True, True)
            assert a.delivered + b.delivered == attempted == len(all_ids)
    finally:
        await other_store.close()
    assert receiver.accepted() == Counter(dict.fromkeys(all_ids, 1))
    assert sum(receiver.requests.values()) == len(all_ids)
    for call_id, _ in calls:
        assert receiver.sequences(call_id) == [1, 2]
    assert {e.status for e in await _events(services, all_ids)} == {DELIVERED}


async def test_tampered_body_fails_verification(
        services: Services, receiver: Receiver, sender: WebhookSender) -> None:
    await _call_with_events(services, receiver.url("bank"))
    assert await sender.run_once() == 1
    [delivery] = receiver.deliveries
    secret = services.keys.webhook_secret("bank")
    assert signing.verify(secret, delivery.signature, delivery.raw, now=time.time())
    for index in (0, len(delivery.raw) // 2, len(delivery.raw) - 1):
        tampered = bytearray(delivery.raw)
        tampered[index] ^= 0x01
        with pytest.raises(signing.SignatureError) as caught:
            signing.verify(secret, delivery.signature, bytes(tampered), now=time.time())
        assert caught.value.reason == "mismatch"


async def test_started_sender_delivers_on_wake_and_follows_with_the_next_event(
        services: Services, receiver: Receiver) -> None:
    # Polling once an hour: only wake() (and the loop going on after a busy round) can send.
    sender = WebhookSender(services, node_id="a", poll_seconds=3600)
    await sender.start()
    try:
        _, (first, second) = await _call_with_events(services, receiver.url("bank"), 2)
        sender.wake()
        async with asyncio.timeout(WAIT):
            await receiver.arrived(first).wait()
            await receiver.arrived(second).wait()  # sent after the first was recorded
    finally:
        await sender.stop()
    assert receiver.order == [first, second]
    assert (await _event(services, first)).status == DELIVERED
