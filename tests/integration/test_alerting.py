"""The alert monitor on a real store (SQLite and PostgreSQL), a real SIP trunk stand-in (the QA
softphone answers OPTIONS) watched by the embedded backend's keepalive, and a real aiohttp
receiver on loopback that verifies every signature.

Every wait is an awaited event (a notification recorded, a trunk status change) bounded by
``asyncio.timeout``; nothing sleeps to synchronise."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select, update

from ars_engine.config import Settings
from ars_engine.config_ops import AlertsConfig
from ars_engine.qa.receiver import LoopbackEndpoint
from ars_engine.qa.softphone import Softphone, SoftphoneBehaviour
from ars_engine.service import signing
from ars_engine.service.alerting import AlertMonitor, NotifyResult, alert_secret, list_alerts
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.runtime import Services
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import (
    CANCELED,
    DEAD,
    FAILED,
    FINISHED,
    FIRING,
    QUEUED,
    RESOLVED,
    Alert,
    Call,
    Tenant,
    WebhookEvent,
)
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings
from ars_engine.telephony.sip.transport import TrunkMonitorDriver

pytestmark = pytest.mark.integration

WAIT = 10.0  # seconds a test awaits an event before failing
T1 = 0.02  # SIP T1 of the engine and the fake trunk: Timer F = 64·T1 = 1.28 s


class Clock:
    """The service's clock: real time plus an offset the test may move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class AlertReceiver(LoopbackEndpoint):
    """An SMS gateway stand-in on 127.0.0.1: verifies ``X-ARS-Signature`` (401 otherwise) and
    keeps each accepted body. ``stop()``/``start()`` keep the port."""

    def __init__(self, secret: str) -> None:
        super().__init__("/sms")
        self.secret = secret
        self.bodies: list[dict[str, Any]] = []
        self.rejected: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms?token=gateway-token"

    def announced(self) -> Counter[tuple[str, str]]:
        """(alert key, state) → how many times it was delivered."""
        return Counter((b["alert"], b["state"]) for b in self.bodies)

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            signing.verify(self.secret, request.headers.get(signing.HEADER, ""), raw,
                           now=time.time())
        except signing.SignatureError as exc:
            self.rejected.append(exc.reason)
            return web.Response(status=401)
        self.bodies.append(json.loads(raw))
        return web.Response(status=200, text="ok")


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[AlertReceiver]:
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path / "var"),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    hooks = AlertReceiver(alert_secret(settings.master_key()))
    await hooks.start()
    try:
        yield hooks
    finally:
        await hooks.stop()


def make_services(store: Store, tmp_path: Path, url: str | None, **alerts: Any) -> Services:
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path / "var"),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    config = AlertsConfig(**{"url": url, "interval_seconds": 60.0, **alerts})
    return Services.build(dataclasses.replace(settings, alerts=config), store,
                          ScenarioCatalog({}), clock=Clock())


async def next_result(results: asyncio.Queue[NotifyResult]) -> NotifyResult:
    async with asyncio.timeout(WAIT):
        return await results.get()


def listen(monitor: AlertMonitor) -> asyncio.Queue[NotifyResult]:
    results: asyncio.Queue[NotifyResult] = asyncio.Queue()
    monitor.on_notify = results.put_nowait
    return results


async def trunk_becomes(trunk: TrunkMonitorDriver, up: bool) -> None:
    async with asyncio.timeout(WAIT):
        while trunk.status is None or trunk.status.up != up:
            trunk.changed.clear()
            await trunk.changed.wait()


async def alert_rows(store: Store) -> dict[str, Alert]:
    async with store.session() as s:
        return {a.key: a for a in (await s.scalars(select(Alert))).all()}


async def add_tenant(store: Store) -> None:
    async with store.session() as s, s.begin():
        s.add(Tenant(id="bank", name="Bank", created_at=datetime.now(UTC), disabled=False,
                     allowed_scenarios=None, max_concurrent=10, per_number_limit=100,
                     per_number_window_s=3600, destination_rules={}))


async def add_call(store: Store, *, state: str, now: datetime, attempts: int = 1,
                   not_before: datetime | None = None, ended: datetime | None = None,
                   answered: bool = False) -> str:
    call_id = repo.new_id("call")
    async with store.session() as s, s.begin():
        s.add(Call(id=call_id, tenant_id="bank", scenario="code", scenario_sha256="0" * 64,
                   destination="+821012345678", params={}, retry_policy={}, state=state,
                   attempts=attempts, not_before=not_before or now,
                   created_at=(not_before or now) - timedelta(minutes=1), updated_at=now,
                   ended_at=ended, answered_at=ended if answered else None, next_event_seq=1))
    return call_id


# -- the trunk -------------------------------------------------------------------------------------
async def test_alert_fires_and_resolves_when_a_fake_trunk_goes_down_and_up(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, receiver.url)
    phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(), tmp_path / "heard", t1=T1)
    await phone.start()
    host, port = phone.address
    key = f"trunk_down:{host}:{port}"
    try:
        async with EmbeddedBackend(SipSettings(proxy=(host, port), keepalive=0.3, t1=T1)
                                   ) as backend:
            assert backend.trunk is not None
            await trunk_becomes(backend.trunk, up=True)
            services.backend = backend
            monitor = AlertMonitor(services, node_id="node-a")
            results = listen(monitor)
            await monitor.start()
            try:
                calm = await monitor.run_once()
                assert calm.conditions[key].firing is False and calm.results == ()
                assert await alert_rows(store) == {}

                await phone.close()  # the trunk goes away: OPTIONS go unanswered (Timer F)
                fired = await next_result(results)  # woken by the keepalive, not the interval
                assert (fired.notification.key, fired.notification.state) == (key, FIRING)
                assert fired.delivered and fired.attempts == 1
                for _ in range(3):
                    assert (await monitor.run_once()).results == ()
                assert receiver.announced() == {(key, FIRING): 1}

                phone = Softphone(("127.0.0.1", port), SoftphoneBehaviour(),
                                  tmp_path / "heard", t1=T1)
                await phone.start()  # the trunk is back on the same port
                resolved = await next_result(results)
                assert (resolved.notification.key, resolved.notification.state) == \
                    (key, RESOLVED)
                assert (await monitor.run_once()).results == ()
            finally:
                await monitor.stop()
    finally:
        await phone.close()

    assert receiver.announced() == {(key, FIRING): 1, (key, RESOLVED): 1}
    assert receiver.rejected == []
    firing, back = receiver.bodies
    assert firing["rule"] == "trunk_down" and firing["node"] == "node-a"
    assert firing["message"] == f"[ARS] 트렁크 응답 없음 / trunk down {host}:{port}"
    assert back["message"] == f"[ARS] 트렁크 복구 / trunk up {host}:{port}"
    assert set(firing) == {"alert", "rule", "state", "message", "value", "since", "node",
                           "sent_at"}
    row = (await alert_rows(store))[key]
    assert (row.state, row.notified, row.next_notify_at, row.last_error) == \
        (RESOLVED, RESOLVED, None, None)
    assert [a.key for a in await list_alerts(store, state=FIRING)] == []


# -- delivery --------------------------------------------------------------------------------------
async def test_a_notification_is_retried_after_retry_seconds_and_delivered_once(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, receiver.url, retry_seconds=0.5,
                             queue_age_seconds=60.0)
    await add_tenant(store)
    now = services.clock()
    await add_call(store, state=QUEUED, now=now, attempts=0,
                   not_before=now - timedelta(minutes=5))
    await receiver.stop()  # the gateway is down: connections are refused
    monitor = AlertMonitor(services, node_id="node-a")
    results = listen(monitor)
    await monitor.start()
    try:
        failed = await next_result(results)
        failed_at = time.monotonic()
        assert not failed.delivered and failed.status is None
        assert failed.error is not None and failed.error.startswith("ClientConnectorError")
        assert "gateway-token" not in failed.error
        row = (await alert_rows(store))["queue_age"]
        assert (row.state, row.notified, row.notify_attempts) == (FIRING, None, 1)
        assert row.last_error == failed.error

        await receiver.start()  # back, on the same port; the monitor's timer does the rest
        attempts = 1
        while True:
            result = await next_result(results)
            attempts += 1
            if result.delivered:
                break
        assert time.monotonic() - failed_at >= 0.5 * 0.9, "not before retry_seconds"
        assert (await monitor.run_once()).results == ()
    finally:
        await monitor.stop()
    assert receiver.announced() == {("queue_age", FIRING): 1}
    row = (await alert_rows(store))["queue_age"]
    assert (row.notified, row.notify_attempts, row.next_notify_at, row.last_error) == \
        (FIRING, attempts, None, None)


async def test_two_nodes_announce_each_change_once(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, receiver.url, queue_age_seconds=60.0)
    await add_tenant(store)
    now = services.clock()
    call_id = await add_call(store, state=QUEUED, now=now, attempts=0,
                             not_before=now - timedelta(minutes=5))
    nodes = [AlertMonitor(services, node_id=f"node-{n}") for n in "ab"]
    for node in nodes:
        await node.open()
    try:
        for _ in range(4):
            await asyncio.gather(*(node.run_once() for node in nodes))
        assert receiver.announced() == {("queue_age", FIRING): 1}
        async with store.session() as s, s.begin():
            await s.execute(update(Call).where(Call.id == call_id).values(state=CANCELED))
        for _ in range(4):
            await asyncio.gather(*(node.run_once() for node in nodes))
    finally:
        for node in nodes:
            await node.stop()
    assert receiver.announced() == {("queue_age", FIRING): 1, ("queue_age", RESOLVED): 1}
    assert {b["node"] for b in receiver.bodies} <= {"node-a", "node-b"}


# -- the store's rules -----------------------------------------------------------------------------
async def test_store_rules_fire_on_answer_rate_queue_age_and_dead_letters(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, receiver.url, answer_rate_min=0.5,
                             answer_min_calls=4, answer_window_minutes=15.0,
                             queue_age_seconds=300.0, dead_letter_window_minutes=60.0)
    await add_tenant(store)
    now = services.clock()
    recent = now - timedelta(minutes=2)
    # within the window: 1 answered of 4 dialled → 25% < 50%
    await add_call(store, state=FINISHED, now=now, ended=recent, answered=True)
    for _ in range(3):
        await add_call(store, state=FAILED, now=now, ended=recent)
    # not counted: ended before the window, canceled, refused before dialling
    await add_call(store, state=FINISHED, now=now, ended=now - timedelta(hours=1),
                   answered=True)
    await add_call(store, state=CANCELED, now=now, ended=recent)
    await add_call(store, state=FAILED, now=now, ended=recent, attempts=0)
    # queue: one due for 10 minutes, one not due yet
    waiting = await add_call(store, state=QUEUED, now=now, attempts=0,
                             not_before=now - timedelta(minutes=10))
    await add_call(store, state=QUEUED, now=now, attempts=0,
                   not_before=now + timedelta(hours=1))
    # webhooks: one went dead 5 minutes ago, one 2 hours ago
    event_call = await add_call(store, state=FINISHED, now=now, ended=now - timedelta(hours=3),
                                answered=True)
    async with store.session() as s, s.begin():
        for seq, died in ((1, now - timedelta(minutes=5)), (2, now - timedelta(hours=2))):
            s.add(WebhookEvent(id=repo.new_id("evt"), call_id=event_call, tenant_id="bank",
                               seq=seq, type="call.finished", url="http://core.example/hook",
                               body="{}", status=DEAD, attempts=9, next_attempt_at=died,
                               created_at=died - timedelta(hours=24)))

    monitor = AlertMonitor(services, node_id="node-a")
    await monitor.open()
    try:
        first = await monitor.run_once()
        readings = first.conditions
        assert readings["answer_rate_low"].firing and readings["answer_rate_low"].value == 0.25
        assert readings["queue_age"].firing
        assert readings["queue_age"].value == pytest.approx(600, abs=5)
        assert readings["webhook_dead_letters"].firing
        assert readings["webhook_dead_letters"].value == 1
        assert {r.notification.key for r in first.results if r.delivered} == {
            "answer_rate_low", "queue_age", "webhook_dead_letters"}
        assert first.next_due is None

        async with store.session() as s, s.begin():
            await s.execute(update(Call).where(Call.id == waiting).values(state=CANCELED))
        second = await monitor.run_once()
        assert [(t.key, t.state) for t in second.transitions] == [("queue_age", RESOLVED)]
    finally:
        await monitor.stop()
    assert receiver.announced() == {("answer_rate_low", FIRING): 1, ("queue_age", FIRING): 1,
                                    ("webhook_dead_letters", FIRING): 1,
                                    ("queue_age", RESOLVED): 1}
    by_key = {(b["alert"], b["state"]): b for b in receiver.bodies}
    assert by_key[("answer_rate_low", FIRING)]["message"] == \
        "[ARS] 응답률 낮음 / answer rate low 25% (1/4 in 15m) < 50%"
    assert [a.key for a in await list_alerts(store, state=FIRING)] == [
        "answer_rate_low", "webhook_dead_letters"]


async def test_without_a_url_alerts_are_stored_and_nothing_is_sent(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, None, queue_age_seconds=60.0)
    await add_tenant(store)
    now = services.clock()
    await add_call(store, state=QUEUED, now=now, attempts=0,
                   not_before=now - timedelta(minutes=5))
    monitor = AlertMonitor(services, node_id="node-a")
    done = await monitor.run_once()  # no HTTP client needed: nothing is sent
    assert [(t.key, t.state) for t in done.transitions] == [("queue_age", FIRING)]
    assert done.results == () and done.next_due is None
    row = (await alert_rows(store))["queue_age"]
    assert (row.state, row.notified, row.next_notify_at) == (FIRING, None, None)
    assert receiver.bodies == []


class FakeAmi:
    """What the monitor reads of an AmiClient: ``state`` (``.value``) and ``wait_connected()``."""

    @dataclasses.dataclass(frozen=True)
    class State:
        value: str

    def __init__(self, state: str) -> None:
        self.state = self.State(state)
        self._connected = asyncio.Event()

    def connect(self) -> None:
        self.state = self.State("connected")
        self._connected.set()

    async def wait_connected(self) -> None:
        await self._connected.wait()


class FakeAsteriskBackend:
    def __init__(self, ami: FakeAmi) -> None:
        self.ami = ami


async def test_ami_down_fires_and_its_reconnect_wakes_the_monitor(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, receiver.url)  # interval 60 s: only a wake helps
    ami = FakeAmi("reconnecting")
    services.backend = FakeAsteriskBackend(ami)
    monitor = AlertMonitor(services, node_id="node-a")
    results = listen(monitor)
    await monitor.start()
    try:
        fired = await next_result(results)
        assert (fired.notification.key, fired.notification.state) == ("ami_down", FIRING)
        assert fired.notification.message == "[ARS] AMI 연결 끊김 / AMI down (reconnecting)"
        ami.connect()
        resolved = await next_result(results)
        assert (resolved.notification.key, resolved.notification.state) == ("ami_down", RESOLVED)
    finally:
        await monitor.stop()
    assert receiver.announced() == {("ami_down", FIRING): 1, ("ami_down", RESOLVED): 1}


class WatchedAmi(FakeAmi):
    """An AMI client that, as AmiClient does, sets ``state_changed`` at every change."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state_changed = asyncio.Event()

    def move(self, state: str) -> None:
        self.state = self.State(state)
        self.state_changed.set()


async def test_the_ami_going_down_wakes_the_monitor_at_once(
        store: Store, receiver: AlertReceiver, tmp_path: Path) -> None:
    services = make_services(store, tmp_path, receiver.url)  # interval 60 s: only a wake helps
    ami = WatchedAmi("connected")
    services.backend = FakeAsteriskBackend(ami)
    monitor = AlertMonitor(services, node_id="node-a")
    results = listen(monitor)
    await monitor.start()
    try:
        ami.move("reconnecting")  # long before the next interval
        fired = await next_result(results)
        assert (fired.notification.key, fired.notification.state) == ("ami_down", FIRING)
        ami.move("connected")
        resolved = await next_result(results)
        assert (resolved.notification.key, resolved.notification.state) == ("ami_down", RESOLVED)
    finally:
        await monitor.stop()
    assert receiver.announced() == {("ami_down", FIRING): 1, ("ami_down", RESOLVED): 1}
