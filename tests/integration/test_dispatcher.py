"""The dispatcher on a real store (SQLite and PostgreSQL) placing real SIP/RTP calls to the QA
softphone on loopback: states and transitions, the outbox, retries, cancel, limits, recovery
after a crash, evidence, and no secret in the database."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from ars_engine.config import Settings
from ars_engine.media.library import MediaLibrary
from ars_engine.qa.softphone import Softphone, SoftphoneBehaviour, parse_cues
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.dispatcher import ENGINE_RESTART, Dispatcher
from ars_engine.service.evidence import verify_evidence
from ars_engine.service.payloads import call_summary
from ars_engine.service.runtime import Services
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import ANSWERED, Call, CallTransition, Tenant, WebhookEvent
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings

CODE = "731946"
SCENARIOS = {
    "code.yaml": """
        scenario: code
        params:
          code: {type: secret, pattern: '^[0-9]{6}$'}
        steps:
          hello:
            play: [{silence: 100}, {digits: "{code}"}]
            next: done
          done:
            finish: {outcome: success, result: {heard: true}}
        """,
    "slow.yaml": """
        scenario: slow
        steps:
          hold:
            play: [{silence: 5000}]
            next: done
          done:
            finish: {outcome: success}
        """,
    "consent.yaml": """
        scenario: consent
        defaults:
          gather: {first_digit_timeout: 10, inter_digit_timeout: 5}
        steps:
          rec:
            record: {action: start, name: consent}
            next: ask
          ask:
            gather: {prompt: {prompt: goodbye}, digits: 1, into: key}
            next: stop
          stop:
            record: stop
            next: done
          done:
            finish: {outcome: success, result: {key: "{key}"}}
        """,
}
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CALL_TIMEOUT = 60.0
# Each test's "a dispatcher wrote to its calls" event (Dispatcher.on_write), keyed by Services.
WRITTEN: dict[int, asyncio.Event] = {}


class Clock:
    """The service's clock: real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name, body in SCENARIOS.items():
        (folder / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return folder


@pytest.fixture
async def services(store: Store, tmp_path: Path, tone_media: MediaLibrary,
                   scenario_dir: Path) -> Services:
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path / "var"),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    settings = replace(settings, service=replace(settings.service, lease_seconds=3.0,
                                                 poll_seconds=0.2))
    catalog = ScenarioCatalog.load(scenario_dir, tone_media)
    assert set(catalog.scenarios) == {"code", "consent", "slow"}, catalog.problems
    svc = Services.build(settings, store, catalog, clock=Clock())
    WRITTEN[id(svc)] = asyncio.Event()
    async with store.session() as s, s.begin():
        s.add(Tenant(id="bank", name="Bank", created_at=T0, disabled=False,
                     allowed_scenarios=None, max_concurrent=10, per_number_limit=100,
                     per_number_window_s=3600, destination_rules={}))
    return svc


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    async with EmbeddedBackend(SipSettings(answer_timeout=3.0, t1=0.1),
                               tmp_path / "rec" / "calls") as b:
        yield b


async def _phone(tmp_path: Path, name: str, **behaviour: Any) -> Softphone:
    phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(**behaviour), tmp_path / name)
    await phone.start()
    return phone


async def _create(services: Services, number: str, scenario: str = "code",
                  params: dict[str, object] | None = None, **extra: object) -> str:
    body: dict[str, object] = {"scenario": scenario, "to": number,
                               "params": params if params is not None else {"code": CODE},
                               "callback_url": "http://127.0.0.1:9/hook", **extra}
    async with services.store.session() as s:
        tenant = await s.get(Tenant, "bank")
    assert tenant is not None
    created = await services.calls.create(tenant, body, idempotency_key=None,
                                          render=call_summary)
    return str(created.body["id"])


async def _wait_state(services: Services, call_id: str, states: tuple[str, ...], *,
                      attempts: int = 0) -> Call:
    """Await the call reaching one of ``states``: the store is the only truth, re-read after
    each write a dispatcher of this test reports."""
    written = WRITTEN[id(services)]
    async with asyncio.timeout(CALL_TIMEOUT):
        while True:
            written.clear()  # before the read: a write after it wakes the wait below
            async with services.store.session() as s:
                call = await repo.get_call(s, None, call_id, transitions=True)
            assert call is not None
            if call.state in states and call.attempts >= attempts:
                return call
            await written.wait()


async def _events(services: Services, call_id: str) -> list[WebhookEvent]:
    async with services.store.session() as s:
        rows = await s.scalars(select(WebhookEvent).where(WebhookEvent.call_id == call_id)
                               .order_by(WebhookEvent.seq))
        return list(rows.all())


def _dispatcher(services: Services, backend: EmbeddedBackend,
                numbers: dict[str, str], **kwargs: Any) -> Dispatcher:
    dispatcher = Dispatcher(services, backend, numbers=numbers,
                            node_id=kwargs.pop("node", "node-a"), **kwargs)
    dispatcher.on_write = WRITTEN[id(services)].set
    return dispatcher


async def _one_call(services: Services, backend: Any, phone: Softphone, number: str,
                    *, target: str | None = None, **create: Any) -> Call:
    """Create one call to ``number`` (routed to ``phone``, or to ``target``), run a dispatcher
    until the call has ended, stop it and the phone; the call as stored."""
    route = target or f"sip:qa@{phone.address[0]}:{phone.address[1]}"
    dispatcher = _dispatcher(services, backend, {number: route})
    call_id = await _create(services, number, **create)
    await dispatcher.start()
    try:
        return await _wait_state(services, call_id, ("finished", "failed"))
    finally:
        await dispatcher.stop()
        await phone.close()


async def test_call_is_dialed_answered_and_finished_with_its_transitions_and_one_event(
        services: Services, backend: EmbeddedBackend, tmp_path: Path) -> None:
    phone = await _phone(tmp_path, "phone", rings=1, ring_seconds=0.2)
    call = await _one_call(services, backend, phone, "+821012340001")
    call_id = call.id
    assert (call.state, call.outcome, call.result) == ("finished", "success", {"heard": True})
    assert [(t.from_state, t.to_state) for t in call.transitions] == [
        (None, "queued"), ("queued", "dialing"), ("dialing", "ringing"),
        ("ringing", "answered"), ("answered", "finished")]
    times = [t.at for t in call.transitions]
    assert times == sorted(times)
    assert call.sealed_params is None, "the sealed code must be dropped when the call ends"
    assert call.params == {"code": "******"}
    assert call.lease_owner is None and call.attempts == 1
    events = await _events(services, call_id)
    assert [(e.type, e.seq, e.status) for e in events] == [("call.finished", 1, "pending")]
    body = json.loads(events[0].body)
    assert body["id"] == events[0].id and body["call"]["outcome"] == "success"


async def test_the_secret_code_is_nowhere_in_the_database(
        services: Services, backend: EmbeddedBackend, tmp_path: Path, store: Store) -> None:
    phone = await _phone(tmp_path, "phone")
    number = "+821012340002"
    dispatcher = _dispatcher(services, backend, {number: f"sip:qa@{phone.address[0]}:"
                                                          f"{phone.address[1]}"})
    call_id = await _create(services, number)
    async with store.session() as s:  # queued: sealed, not clear
        queued = await repo.get_call(s, None, call_id)
    assert queued is not None and queued.sealed_params and CODE not in queued.sealed_params
    await dispatcher.start()
    try:
        await _wait_state(services, call_id, ("finished", "failed"))
    finally:
        await dispatcher.stop()
        await phone.close()
    dump = []
    async with store.session() as s:
        for table in ("calls", "call_transitions", "webhook_events", "idempotency_keys"):
            rows = (await s.execute(text(f"SELECT * FROM {table}"))).all()
            dump.append(repr(rows))
    assert CODE not in "".join(dump)


async def test_busy_is_retried_per_policy_then_fails(
        services: Services, backend: EmbeddedBackend, tmp_path: Path) -> None:
    phone = await _phone(tmp_path, "busy", mode="busy")
    number = "+821012340003"
    dispatcher = _dispatcher(services, backend, {number: f"sip:qa@{phone.address[0]}:"
                                                          f"{phone.address[1]}"})
    call_id = await _create(services, number, retry={"max_attempts": 2, "retry_on": ["busy"],
                                                     "interval_seconds": 60})
    await dispatcher.start()
    try:
        queued = await _wait_state(services, call_id, ("queued",), attempts=1)
        assert queued.outcome == "busy" and queued.not_before > services.clock()
        assert isinstance(services.clock, Clock)
        services.clock.offset = timedelta(seconds=61)  # the retry interval has passed
        dispatcher.wake()
        call = await _wait_state(services, call_id, ("failed", "finished"))
    finally:
        await dispatcher.stop()
        await phone.close()
    assert (call.state, call.outcome, call.attempts, call.sip_status) == ("failed", "busy", 2,
                                                                          486)
    moves = [(t.from_state, t.to_state) for t in call.transitions]
    assert moves == [(None, "queued"), ("queued", "dialing"), ("dialing", "queued"),
                     ("queued", "dialing"), ("dialing", "failed")]
    assert [e.type for e in await _events(services, call_id)] == ["call.retrying",
                                                                   "call.failed"]


async def test_cancel_while_ringing_sends_cancel_and_records_canceled(
        services: Services, backend: EmbeddedBackend, tmp_path: Path) -> None:
    phone = await _phone(tmp_path, "never", mode="never")
    number = "+821012340004"
    dispatcher = _dispatcher(services, backend, {number: f"sip:qa@{phone.address[0]}:"
                                                          f"{phone.address[1]}"})
    services.calls.on_cancel = dispatcher.cancel
    call_id = await _create(services, number)
    await dispatcher.start()
    try:
        await _wait_state(services, call_id, ("ringing",))
        canceled = await services.calls.cancel("bank", call_id)
        assert canceled.cancel_requested
        call = await _wait_state(services, call_id, ("canceled", "failed", "finished"))
        async with asyncio.timeout(CALL_TIMEOUT):
            report = await phone.reports.get()
    finally:
        await dispatcher.stop()
        await phone.close()
    assert (call.state, call.outcome) == ("canceled", "canceled")
    assert "canceled" in json.dumps(report).lower()  # the phone saw our CANCEL
    assert [e.type for e in await _events(services, call_id)] == ["call.canceled"]


async def test_cancel_of_a_queued_call_never_dials(services: Services) -> None:
    call_id = await _create(services, "+821012340005", schedule_at=(
        datetime.now(UTC) + timedelta(hours=1)).isoformat())
    call = await services.calls.cancel("bank", call_id)
    assert call.state == "canceled"
    assert [e.type for e in await _events(services, call_id)] == ["call.canceled"]


async def test_a_call_leased_by_a_dead_node_fails_once_with_engine_restart(
        services: Services, backend: EmbeddedBackend, store: Store) -> None:
    call_id = await _create(services, "+821012340006")
    now = services.clock()
    async with store.session() as s, s.begin():  # what a node that died mid-call leaves
        call = await repo.get_call(s, None, call_id)
        assert call is not None
        call.attempts, call.lease_owner = 1, "node-dead"
        call.lease_expires_at = now - timedelta(seconds=1)
        repo.transition(s, call, "dialing", now, node="node-dead")
        repo.transition(s, call, ANSWERED, now, node="node-dead")
    first = _dispatcher(services, backend, {}, node="node-b")
    second = _dispatcher(services, backend, {}, node="node-c")
    counts = await asyncio.gather(first.recover(), second.recover())
    assert sorted(counts) == [0, 1]  # exactly one node reports it
    async with store.session() as s:
        call = await repo.get_call(s, None, call_id, transitions=True)
    assert call is not None
    assert (call.state, call.reason, call.outcome) == ("failed", ENGINE_RESTART, "error")
    assert call.sealed_params is None
    assert [e.type for e in await _events(services, call_id)] == ["call.failed"]
    assert call.transitions[-1].from_state == ANSWERED


async def test_restart_under_the_same_node_id_recovers_its_calls_at_once(
        services: Services, backend: EmbeddedBackend, store: Store) -> None:
    call_id = await _create(services, "+821012340007")
    now = services.clock()
    async with store.session() as s, s.begin():
        call = await repo.get_call(s, None, call_id)
        assert call is not None
        call.attempts, call.lease_owner = 1, "node-a"
        call.lease_expires_at = now + timedelta(minutes=5)  # lease still valid
        repo.transition(s, call, "dialing", now, node="node-a")
    dispatcher = _dispatcher(services, backend, {}, node="node-a")
    await dispatcher.start()
    await dispatcher.stop()
    async with store.session() as s:
        call = await repo.get_call(s, None, call_id)
    assert call is not None and (call.state, call.reason) == ("failed", ENGINE_RESTART)


async def test_tenant_concurrency_and_one_call_per_number_at_a_time(
        services: Services, backend: EmbeddedBackend, tmp_path: Path, store: Store) -> None:
    async with store.session() as s, s.begin():
        tenant = await s.get(Tenant, "bank")
        assert tenant is not None
        tenant.max_concurrent = 1
    phone = await _phone(tmp_path, "never", mode="never")
    uri = f"sip:qa@{phone.address[0]}:{phone.address[1]}"
    numbers = {"+821012340008": uri, "+821012340009": uri}
    dispatcher = _dispatcher(services, backend, numbers)
    first = await _create(services, "+821012340008")
    second = await _create(services, "+821012340009")
    await dispatcher.start()
    try:
        await _wait_state(services, first, ("dialing", "ringing"))
        async with store.session() as s:
            waiting = await repo.get_call(s, None, second)
        assert waiting is not None and waiting.state == "queued"  # the tenant's limit is 1
        await _wait_state(services, first, ("failed",))  # no answer after 3 s
        await _wait_state(services, second, ("failed",))
    finally:
        await dispatcher.stop()
        await phone.close()
    async with store.session() as s:
        rows = (await s.scalars(select(CallTransition).where(
            CallTransition.to_state == "dialing").order_by(CallTransition.id))).all()
    a = next(r for r in rows if r.call_id == first)
    b = next(r for r in rows if r.call_id == second)
    async with store.session() as s:
        first_end = (await s.scalars(select(CallTransition).where(
            CallTransition.call_id == first, CallTransition.to_state == "failed"))).one()
    assert b.at >= first_end.at > a.at  # the second waited for the first to end


async def test_recorded_call_gets_a_verifiable_evidence_bundle(
        services: Services, backend: EmbeddedBackend, tmp_path: Path) -> None:
    phone = await _phone(tmp_path, "consent", keys=parse_cues(["1"]))
    call = await _one_call(services, backend, phone, "+821012340010", scenario="consent",
                           params={})
    call_id = call.id
    assert (call.state, call.result) == ("finished", {"key": "1"})
    assert call.evidence and call.recording
    bundle = services.resolve(call.evidence)
    report = verify_evidence(bundle, key=services.keys.evidence_key)
    assert report.ok, report.describe()
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["call_id"] == call_id and [d["key"] for d in manifest["dtmf"]] == ["1"]
    assert services.resolve(call.recording).is_file()


def test_clock_type_is_callable() -> None:
    clock: Callable[[], datetime] = Clock()
    assert clock().tzinfo is UTC


async def test_calls_per_second_limit_spaces_out_the_dials(
        services: Services, backend: EmbeddedBackend, tmp_path: Path, store: Store) -> None:
    rate = 4.0
    services.settings = replace(services.settings, service=replace(
        services.settings.service, calls_per_second=rate))
    phone = await _phone(tmp_path, "busy", mode="busy")  # each attempt ends at once (486)
    uri = f"sip:qa@{phone.address[0]}:{phone.address[1]}"
    numbers = {f"+8210123411{i:02d}": uri for i in range(10)}
    dispatcher = _dispatcher(services, backend, numbers)
    ids = [await _create(services, n) for n in numbers]
    await dispatcher.start()
    try:
        for call_id in ids:
            await _wait_state(services, call_id, ("failed",))
    finally:
        await dispatcher.stop()
        await phone.close()
    async with store.session() as s:
        dials = sorted((await s.scalars(select(CallTransition.at).where(
            CallTransition.to_state == "dialing"))).all())
    assert len(dials) == 10
    # a full bucket of 4 may go at once; the other 6 wait for tokens at 4 per second
    span = (dials[-1] - dials[0]).total_seconds()
    assert span >= (10 - rate) / rate - 0.05, dials


async def test_a_call_outliving_its_lease_while_the_node_drains_is_not_taken_for_dead(
        services: Services, backend: EmbeddedBackend, tmp_path: Path) -> None:
    """stop() lets running calls end; the heartbeat keeps renewing their leases meanwhile, so
    another node's recovery (run again and again here) never fails a call that is alive."""
    phone = await _phone(tmp_path, "phone")
    number = "+821012340020"
    dispatcher = _dispatcher(services, backend, {number: f"sip:qa@{phone.address[0]}:"
                                                          f"{phone.address[1]}"})
    other = _dispatcher(services, backend, {}, node="node-b")
    call_id = await _create(services, number, scenario="slow", params={})
    await dispatcher.start()
    written = WRITTEN[id(services)]
    try:
        answered = await _wait_state(services, call_id, ("answered",))
        first_lease_end = answered.lease_expires_at
        assert first_lease_end is not None
        stopping = asyncio.create_task(dispatcher.stop())
        recovered, last_check = 0, services.clock()
        async with asyncio.timeout(CALL_TIMEOUT):
            while not stopping.done():  # 5 s of call > the 3 s lease: recover at each renewal
                written.clear()
                recovered += await other.recover()
                last_check = services.clock()
                renewal = asyncio.ensure_future(written.wait())
                await asyncio.wait([stopping, renewal], return_when=asyncio.FIRST_COMPLETED)
                renewal.cancel()
        await stopping
    finally:
        await phone.close()
    assert last_check > first_lease_end  # recovery ran when the first lease alone had lapsed
    async with services.store.session() as s:
        call = await repo.get_call(s, None, call_id)
    assert call is not None
    assert recovered == 0 and (call.state, call.outcome) == ("finished", "success")
