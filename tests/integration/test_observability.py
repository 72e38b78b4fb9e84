"""/metrics, /healthz and /readyz of a real app on both databases: after real SIP calls to the QA
softphone the metrics equal the tables (calls by state and outcome, terminal writes, dial attempts,
the webhook outbox); readiness fails, naming the check, when the store is down or locked, when
the trunk stops answering OPTIONS, and when the dispatcher drains; log records carry their call,
and ``ars-engine serve`` with ``log_format = "json"`` writes JSON lines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from ars_engine.api.app import create_app
from ars_engine.api.health import METRICS, migrations_head
from ars_engine.config import Settings
from ars_engine.media.library import MediaLibrary
from ars_engine.qa.softphone import Softphone, SoftphoneBehaviour
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.dispatcher import Dispatcher
from ars_engine.service.logs import JsonFormatter
from ars_engine.service.payloads import call_summary
from ars_engine.service.runtime import Services
from ars_engine.service.webhooks import WebhookSender
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import (
    TERMINAL_STATES,
    Call,
    CallTransition,
    Tenant,
    WebhookEvent,
)
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings
from ars_engine.telephony.outcomes import CallAttempt, Outcome
from tests.pg_peer import free_port

WAIT = 60.0  # seconds any awaited event may take before the test fails
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SCENARIO = """
    scenario: code
    steps:
      hello:
        play: [{silence: 300}]
        next: done
      done:
        finish: {outcome: success}
    """
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Hooks:
    """The verification service: /ok answers 200, /flaky 503 once then 200, /gone always 500."""

    def __init__(self) -> None:
        self.flaky_seen = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            await request.read()
            path = request.match_info["path"]
            if path == "flaky":
                self.flaky_seen += 1
                return web.Response(status=503 if self.flaky_seen == 1 else 200)
            return web.Response(status=200 if path == "ok" else 500)

        app = web.Application()
        app.router.add_post("/{path}", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (the context is read then), keeps the objects."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    loggers = [logging.getLogger(n) for n in ("ars_engine.webhooks", "ars_engine.test_dial",
                                              "ars_engine.metrics")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture
async def services(store: Store, tmp_path: Path, tone_media: MediaLibrary) -> Services:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "code.yaml").write_text(textwrap.dedent(SCENARIO), encoding="utf-8")
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path / "var"),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    settings = replace(settings, console=replace(settings.console, enabled=False),
                       service=replace(settings.service, lease_seconds=30.0, poll_seconds=0.2,
                                       calls_per_second=100.0))
    catalog = ScenarioCatalog.load(folder, tone_media)
    assert set(catalog.scenarios) == {"code"}, catalog.problems
    svc = Services.build(settings, store, catalog, clock=Clock())
    async with store.session() as s, s.begin():
        for tenant in ("bank", "closed"):
            s.add(Tenant(id=tenant, name=tenant.title(), created_at=T0, disabled=False,
                         allowed_scenarios=None, max_concurrent=10, per_number_limit=100,
                         per_number_window_s=3600, destination_rules={}))
    return svc


async def _orphan_and_refused_calls(services: Services, hook: str) -> None:
    """A call a dead node left mid-call (recovered as engine_restart) and a call of a tenant
    disabled since (refused at dispatch): terminal writes outside a dial."""
    orphan = await _create(services, "+821012340007", hook)
    await _create(services, "+821012340008", hook, tenant_id="closed")
    now = services.clock()
    async with services.store.session() as s, s.begin():
        call = await repo.get_call(s, None, orphan)
        assert call is not None
        call.attempts, call.lease_owner = 1, "node-dead"
        call.lease_expires_at = now - timedelta(seconds=1)
        repo.transition(s, call, "dialing", now, node="node-dead")
        closed = await s.get(Tenant, "closed")
        assert closed is not None
        closed.disabled = True


Client = TestClient[Any, Any]


@pytest.fixture
async def client(services: Services) -> AsyncIterator[Callable[[], Awaitable[Client]]]:
    """Starts ``create_app(services)`` (with what the test put in ``services``) on demand."""
    started: list[Client] = []

    async def start() -> Client:
        test_client: Client = TestClient(TestServer(create_app(services)))
        await test_client.start_server()
        started.append(test_client)
        return test_client

    yield start
    for test_client in started:
        await test_client.close()


async def _phone(tmp_path: Path, name: str, **behaviour: Any) -> Softphone:
    phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(**behaviour), tmp_path / name)
    await phone.start()
    return phone


async def _create(services: Services, number: str, hook: str, *, tenant_id: str = "bank",
                  **extra: object) -> str:
    async with services.store.session() as s:
        tenant = await s.get(Tenant, tenant_id)
    assert tenant is not None
    body = {"scenario": "code", "to": number, "params": {}, "callback_url": hook, **extra}
    created = await services.calls.create(tenant, body, idempotency_key=None,
                                          render=call_summary)
    return str(created.body["id"])


async def _until(event: asyncio.Event, check: Callable[[], Awaitable[bool]]) -> None:
    """Re-check after each write ``event`` reports, until ``check()`` holds."""
    async with asyncio.timeout(WAIT):
        while True:
            event.clear()  # before the read: a write after it wakes the wait below
            if await check():
                return
            await event.wait()


async def _scrape(test_client: TestClient[Any, Any]) -> Samples:
    response = await test_client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    out: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _series(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """{label values: value} of one series (labels in the order given)."""
    return {tuple(dict(key)[label] for label in labels): v
            for (n, key), v in samples.items() if n == name}


async def _group(services: Services, *columns: Any, where: Any = None) -> dict[Any, int]:
    query = select(*columns, func.count()).group_by(*columns)
    if where is not None:
        query = query.where(where)
    async with services.store.session() as s:
        rows = (await s.execute(query)).all()
    return {tuple("" if v is None else v for v in row[:-1]): row[-1] for row in rows}


async def _readyz(test_client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await test_client.get("/readyz")
    return response.status, await response.json()


# -- (a) the metrics equal the tables after real calls ------------------------------------------

async def test_metrics_equal_the_tables_after_real_calls(
        services: Services, client: Any, tmp_path: Path, json_lines: JsonLines) -> None:
    hooks = Hooks()
    await hooks.start()
    answer = await _phone(tmp_path, "answer", rings=1, ring_seconds=0.1)
    busy = await _phone(tmp_path, "busy", mode="busy")
    never = await _phone(tmp_path, "never", mode="never")
    reject = await _phone(tmp_path, "reject", mode="reject")
    route = {p: f"sip:qa@{p.address[0]}:{p.address[1]}" for p in (answer, busy, never, reject)}
    numbers = {"+821012340001": route[answer], "+821012340002": route[answer],
               "+821012340003": route[busy], "+821012340004": route[never],
               "+821012340005": route[reject]}
    backend = EmbeddedBackend(SipSettings(answer_timeout=2.0, t1=0.1), tmp_path / "rec")
    try:
        async with backend:
            dispatcher = Dispatcher(services, backend, numbers=numbers, node_id="node-a")
            sender = WebhookSender(services, node_id="node-a", max_age=timedelta(minutes=30),
                                   rand=lambda: 0.5)
            calls_written, events_written = asyncio.Event(), asyncio.Event()
            dispatcher.on_write, sender.on_write = calls_written.set, events_written.set
            dispatcher.on_event = sender.wake
            services.dispatcher, services.webhooks = dispatcher, sender
            ids = {"ok1": await _create(services, "+821012340001", hooks.url("ok")),
                   "ok2": await _create(services, "+821012340002", hooks.url("ok")),
                   "busy": await _create(services, "+821012340003", hooks.url("flaky")),
                   "never": await _create(services, "+821012340004", hooks.url("gone")),
                   "reject": await _create(services, "+821012340005", hooks.url("ok"))}
            await _create(services, "+821012340006", hooks.url("ok"), schedule_at=(
                datetime.now(UTC) + timedelta(days=1)).isoformat())  # stays queued
            await _orphan_and_refused_calls(services, hooks.url("ok"))
            test_client = await client()
            assert dispatcher.metrics is test_client.app[METRICS], "create_app hooks it"

            async def calls_ended() -> bool:
                done = await _group(services, Call.state, where=Call.state.in_(TERMINAL_STATES))
                return sum(done.values()) == len(ids) + 2  # + the orphan and the refused

            async def each_event_tried_once() -> bool:
                untried = await _group(services, WebhookEvent.status,
                                       where=WebhookEvent.attempts == 0)
                return await calls_ended() and not untried

            async def outbox_settled() -> bool:
                return not await _group(services, WebhookEvent.status,
                                        where=WebhookEvent.status == "pending")

            await _until(calls_written, calls_ended)
            await _until(events_written, each_event_tried_once)
            services.clock.offset = timedelta(hours=1)  # type: ignore[attr-defined]
            sender.wake()  # flaky's retry is due and succeeds; gone's fails past max_age: dead
            await _until(events_written, outbox_settled)
            metrics = await _scrape(test_client)
            calls = await _group(services, Call.state, Call.outcome)
            terminal = await _group(services, Call.state, Call.outcome,
                                    where=Call.state.in_(TERMINAL_STATES))
            outbox = await _group(services, WebhookEvent.status)
            async with services.store.session() as s:
                dials = await s.scalar(select(func.count()).where(  # by this node
                    CallTransition.to_state == "dialing", CallTransition.node == "node-a"))
                event_attempts = await s.scalar(select(func.sum(WebhookEvent.attempts)))
    finally:
        for phone in (answer, busy, never, reject):
            await phone.close()
        await hooks.stop()

    # what the calls did (so the comparisons below compare something)
    assert calls == {("finished", "success"): 2, ("failed", "busy"): 1,
                     ("failed", "no_answer"): 1, ("failed", "rejected"): 1, ("queued", ""): 1,
                     ("failed", "error"): 1, ("failed", "failed"): 1}
    assert outbox == {("delivered",): 6, ("dead",): 1}
    # store-side gauges equal the tables
    assert metrics[("ars_store_up", ())] == 1
    assert _series(metrics, "ars_calls", "state", "outcome") == calls
    assert metrics[("ars_calls_queued", ())] == 0, "the scheduled call is not due"
    assert _series(metrics, "ars_webhook_events", "status") == outbox
    assert metrics[("ars_webhook_oldest_pending_age_seconds", ())] == 0
    # this node's counters equal what it wrote
    assert _series(metrics, "ars_calls_finished_total", "state", "outcome") == terminal
    setup_counts = _series(metrics, "ars_call_setup_seconds_count", "outcome")
    assert setup_counts == {("answered",): 2, ("busy",): 1, ("no_answer",): 1,
                            ("rejected",): 1}
    assert sum(setup_counts.values()) == dials == dispatcher.stats.dialed == 5
    no_answer_fast = _series(metrics, "ars_call_setup_seconds_bucket", "outcome", "le")
    assert no_answer_fast[("no_answer", "1.0")] == 0, "no answer takes answer_timeout (2 s)"
    assert no_answer_fast[("busy", "+Inf")] == 1
    deliveries = _series(metrics, "ars_webhook_deliveries_total", "result")
    assert deliveries == {("delivered",): 6, ("failed",): 2, ("dead",): 1}
    assert sum(deliveries.values()) == event_attempts
    # live parts: no call runs now; the two answered calls carried RTP both ways
    assert metrics[("ars_active_calls", ())] == 0
    assert metrics[("ars_rtp_sessions", ())] == 0
    assert metrics[("ars_rtp_packets_sent_total", ())] >= 2 * 300 / 20
    assert metrics[("ars_rtp_packets_received_total", ())] > 0
    assert metrics[("ars_rtp_jitter_seconds_count", ())] == 2
    # the sender's log lines name their call and tenant
    failures = [e for e in json_lines.entries if e["logger"] == "ars_engine.webhooks"]
    assert {e["call_id"] for e in failures} == {ids["busy"], ids["never"]}
    assert {e["tenant"] for e in failures} == {"bank"}
    assert all(e["call_id"] in e["msg"] for e in failures)


class LoggingDialer:
    """A backend whose dial logs a line, waits until the other call's dial has logged too
    (the two calls' contexts are live at once), logs again and finds the line busy."""

    def __init__(self) -> None:
        self.log = logging.getLogger("ars_engine.test_dial")
        self.both_dialing = asyncio.Barrier(2)

    async def dial(self, target: str, *, call_id: str | None = None,
                   on_progress: Any = None) -> CallAttempt:
        self.log.warning("dialing %s", call_id)
        async with asyncio.timeout(10):
            await self.both_dialing.wait()  # the log context survives the suspension
        self.log.warning("dialed %s", call_id)
        return CallAttempt(Outcome.BUSY, 486, "Busy Here")


async def test_log_records_of_a_call_carry_its_call_id_and_tenant(
        services: Services, json_lines: JsonLines) -> None:
    dispatcher = Dispatcher(services, LoggingDialer(), node_id="node-a",
                            numbers={"+821012340011": "sip:a@127.0.0.1",
                                     "+821012340012": "sip:b@127.0.0.1"})
    first = await _create(services, "+821012340011", "http://127.0.0.1:9/")
    second = await _create(services, "+821012340012", "http://127.0.0.1:9/")
    written = asyncio.Event()
    dispatcher.on_write = written.set

    async def both_ended() -> bool:
        return sum((await _group(services, Call.state, where=Call.state == "failed")).values()) == 2

    await dispatcher.start()
    try:
        await _until(written, both_ended)
    finally:
        await dispatcher.stop()
    entries = [e for e in json_lines.entries if e["logger"] == "ars_engine.test_dial"]
    assert len(entries) == 4
    for entry in entries:
        assert entry["tenant"] == "bank"
        assert entry["msg"].split()[1].startswith(entry["call_id"] + "-")  # call id + attempt
    assert {e["call_id"] for e in entries} == {first, second}
    logging.getLogger("ars_engine.test_dial").warning("outside any call")
    assert json_lines.entries[-1]["call_id"] is None


# -- (b) /healthz and /readyz --------------------------------------------------------------------

async def test_healthy_engine_is_live_and_ready_and_not_ready_once_draining(
        services: Services, client: Any, tmp_path: Path) -> None:
    trunk = await _phone(tmp_path, "trunk")  # answers OPTIONS
    settings = SipSettings(proxy=trunk.address, keepalive=0.2, t1=0.05)
    try:
        async with EmbeddedBackend(settings, tmp_path / "rec") as backend:
            assert backend.trunk is not None
            async with asyncio.timeout(WAIT):
                while backend.trunk.status is None:
                    await backend.trunk.changed.wait()
                    backend.trunk.changed.clear()
            dispatcher = Dispatcher(services, backend, node_id="node-a")
            services.backend, services.dispatcher = backend, dispatcher
            test_client = await client()
            live = await test_client.get("/healthz")
            assert (live.status, await live.json()) == (200, {"status": "ok"})
            status, body = await _readyz(test_client)
            assert (status, body["status"]) == (200, "ready"), body
            assert set(body["checks"]) == {"database", "migrations", "dispatcher", "backend"}
            assert all(c["ok"] for c in body["checks"].values()), body
            head = migrations_head()
            assert head and body["checks"]["migrations"]["detail"] == f"at {head}, head {head}"
            metrics = await _scrape(test_client)
            assert metrics[("ars_trunk_up", ())] == 1
            assert ("ars_ami_connected", ()) not in metrics
            await dispatcher.stop()  # as at SIGTERM: draining
            status, body = await _readyz(test_client)
            assert (status, body["status"]) == (503, "not_ready")
            assert [n for n, c in body["checks"].items() if not c["ok"]] == ["dispatcher"]
            assert "draining" in body["checks"]["dispatcher"]["detail"]
    finally:
        await trunk.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_readyz_names_the_trunk_when_it_stops_answering_options(
        services: Services, client: Any, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a proxy that never answers
        silent.bind(("127.0.0.1", 0))
        proxy = silent.getsockname()
        settings = SipSettings(proxy=proxy, keepalive=0.2, t1=0.01)  # Timer F: 64·T1 = 0.64 s
        async with EmbeddedBackend(settings, tmp_path / "rec") as backend:
            assert backend.trunk is not None
            async with asyncio.timeout(WAIT):
                while backend.trunk.status is None:
                    await backend.trunk.changed.wait()
                    backend.trunk.changed.clear()
            assert backend.trunk.status.up is False
            services.backend = backend
            test_client = await client()
            status, body = await _readyz(test_client)
            metrics = await _scrape(test_client)
    assert status == 503, body
    assert [n for n, c in body["checks"].items() if not c["ok"]] == ["backend"]
    assert f"trunk {proxy[0]}:{proxy[1]}" in body["checks"]["backend"]["detail"]
    assert metrics[("ars_trunk_up", ())] == 0


async def test_readyz_fails_the_database_check_when_the_store_is_down(
        services: Services, client: Any, store: Store, json_lines: JsonLines) -> None:
    test_client = await client()
    metrics_before = test_client.app[METRICS]
    metrics_before.call_finished("finished", "success")
    if store.is_postgresql:  # a PostgreSQL that is not running
        services.store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/ars")
    else:
        await store.close()
    try:
        status, body = await _readyz(test_client)
        live = await test_client.get("/healthz")
        response = await test_client.get("/metrics", headers={"X-Request-Id": "scrape-1"})
        assert response.status == 200
        metrics = await _scrape(test_client)
    finally:
        if services.store is not store:
            await services.store.close()
    assert status == 503, body
    checks = body["checks"]
    assert [n for n, c in checks.items() if not c["ok"]] == ["database", "migrations"]
    assert checks["database"]["detail"] and "unknown" in checks["migrations"]["detail"]
    assert live.status == 200, "liveness does not depend on the store"
    assert metrics[("ars_store_up", ())] == 0
    assert not [n for n, _ in metrics if n in ("ars_calls", "ars_webhook_events")]
    assert metrics[("ars_calls_finished_total", (("outcome", "success"),
                                                  ("state", "finished")))] == 1
    # the scrape's warning (once per outage) names the request it came from
    [warning] = [e for e in json_lines.entries if e["logger"] == "ars_engine.metrics"]
    assert warning["request_id"] == "scrape-1" and "did not answer" in warning["msg"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_locked_database_fails_readiness_in_time_and_recovers(
        services: Services, client: Any, db_url: str) -> None:
    test_client = await client()
    path = db_url.split(":///", 1)[1]
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # every other connection now waits (busy_timeout 30 s)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body = await _readyz(test_client)
        took = loop.time() - started
        again, body_again = await _readyz(test_client)  # the first check still waits
        metrics = await _scrape(test_client)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert status == 503 and 1.9 <= took < 5.0, (status, took)
    assert "within 2 s" in body["checks"]["database"]["detail"]
    assert again == 503 and "previous" in body_again["checks"]["database"]["detail"]
    assert metrics[("ars_store_up", ())] == 0
    await test_client.app[METRICS].ready_query.wait()  # the waiting check gets its answer
    status, body = await _readyz(test_client)
    assert status == 200, body


async def test_metrics_report_the_due_queue_and_the_oldest_pending_webhook(
        services: Services, client: Any) -> None:
    clock = services.clock
    assert isinstance(clock, Clock)
    first = await _create(services, "+821012340021", "http://127.0.0.1:9/")
    await _create(services, "+821012340022", "http://127.0.0.1:9/")
    await _create(services, "+821012340023", "http://127.0.0.1:9/",
                  schedule_at=(datetime.now(UTC) + timedelta(minutes=30)).isoformat())
    async with services.store.session() as s, s.begin():  # an event waiting since 10 minutes
        s.add(WebhookEvent(id="evt_old", call_id=first, tenant_id="bank", seq=1,
                           type="call.failed", url="http://127.0.0.1:9/", body="{}",
                           status="pending", attempts=3, next_attempt_at=clock(),
                           created_at=clock() - timedelta(minutes=10)))
    clock.offset = timedelta(minutes=5)  # no dispatcher: the due calls wait
    metrics = await _scrape(await client())
    assert metrics[("ars_calls_queued", ())] == 2, "the scheduled call is not due yet"
    assert 300 <= metrics[("ars_queue_oldest_age_seconds", ())] < 330
    assert 900 <= metrics[("ars_webhook_oldest_pending_age_seconds", ())] < 930
    assert _series(metrics, "ars_webhook_events", "status") == {("pending",): 1}
    assert ("ars_active_calls", ()) not in metrics, "no dispatcher in this process"


# -- (c) `ars-engine serve` with log_format = "json" ---------------------------------------------

async def test_serve_logs_json_lines_and_answers_health_and_metrics(tmp_path: Path) -> None:
    config = tmp_path / "ars.toml"
    config.write_text('[service]\nlog_format = "json"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
    env.update(ARS_DATA_DIR=str(tmp_path / "data"), ARS_RECORDINGS_DIR=str(tmp_path / "rec"),
               ARS_TTS_ONLINE="0")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ars_engine.cli", "--log-level", "INFO", "serve", "--config",
        str(config), "--listen", f"127.0.0.1:{free_port()}", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):  # the first start may render the prompt cache
            while not (serving := re.search(r"serving on (http://\S+)", "".join(lines))):
                line = (await process.stderr.readline()).decode()
                assert line, "serve exited:\n" + "".join(lines)
                lines.append(line)
        url = serving.group(1)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(f"{url}/healthz") as live, http.get(f"{url}/readyz") as ready:
                assert (live.status, ready.status) == (200, 200), await ready.text()
            async with http.get(f"{url}/metrics") as scrape:
                families = {f.name for f in text_string_to_metric_families(await scrape.text())}
        assert {"ars_store_up", "ars_calls", "ars_active_calls", "ars_build_info"} <= families
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            rest = await process.stderr.read()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    logged = [json.loads(line) for line in rest.decode().splitlines() if line.strip()]
    assert {"ts", "level", "logger", "msg", "call_id", "tenant"} <= set(logged[0])
    assert {"logger": "ars_engine.serve", "msg": "stopping: draining running calls"}.items() \
        <= next(e for e in logged if e["logger"] == "ars_engine.serve").items()
