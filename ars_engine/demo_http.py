"""``ars-engine demo --http`` (run by ``make demo``): the whole service on loopback.

The engine (SQLite, embedded SIP/RTP) serves its API; QA softphones stand in for the people
called (one per demo number, each pressing the keys its case needs); a demo tenant is created;
every shipped scenario, plus a busy and a never-answered phone, is triggered with the same HTTP
requests curl would send; a demo receiver checks each webhook's signature, de-duplicates by event
id, and the table shows what came back.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import click

from .demo import LocalCore
from .demo_calls import CallCase, call_cases
from .qa.receiver import WebhookReceiver
from .qa.softphone import Softphone, SoftphoneBehaviour, parse_cues
from .scenario.loader import load_scenario
from .telephony.embedded import EmbeddedBackend, SipSettings

if TYPE_CHECKING:
    from .config import Settings
    from .media.library import MediaLibrary

TENANT = "demo"
WEBHOOK_TIMEOUT = 120.0


@dataclass(slots=True)
class DemoRow:
    case: CallCase
    number: str
    call_id: str = ""
    state: str = "-"
    outcome: str = "-"
    webhooks: int = 0
    evidence: str | None = None
    error: str | None = None


def _number(index: int) -> str:
    return f"+82100000{index:04d}"


def _curl(url: str, key: str, body: dict[str, Any]) -> str:
    data = json.dumps(body, ensure_ascii=False)
    return (f"curl -sS -X POST {url}/v1/calls -H 'Authorization: Bearer {key[:12]}…' \\\n"
            f"     -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' \\\n"
            f"     -d '{data}'")


async def _create_tenant(settings: Settings) -> str:
    from .store import repo
    from .store.db import Store
    from .store.models import Tenant

    store = Store(settings.service.database_url)
    try:
        await store.upgrade()
        async with store.session() as s, s.begin():
            now = datetime.now(UTC)
            if await repo.get_tenant(s, TENANT) is None:
                s.add(Tenant(id=TENANT, name="Demo bank", created_at=now, disabled=False,
                             allowed_scenarios=None, max_concurrent=20, per_number_limit=100,
                             per_number_window_s=3600, destination_rules={}))
                await s.flush()
            _row, key = await repo.create_api_key(s, TENANT, settings.master_key().api_key_pepper,
                                                  now=now, label="demo")
        return key
    finally:
        await store.close()


@dataclass(slots=True)
class Observed:
    """What the engine's own observability said at the end of the demo."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # /metrics ars_calls
    ready: str = "?"  # /readyz status


async def _observe(url: str) -> Observed:
    """Scrape ``/metrics`` (parsed with prometheus_client's parser) and read ``/readyz``."""
    from prometheus_client.parser import text_string_to_metric_families

    seen = Observed()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        async with http.get(f"{url}/readyz") as resp:
            seen.ready = (await resp.json()).get("status", "?")
    for family in text_string_to_metric_families(text):
        if family.name == "ars_calls":
            for sample in family.samples:
                if sample.value:
                    key = (sample.labels["state"], sample.labels["outcome"] or "-")
                    seen.calls[key] = int(sample.value)
    return seen


async def _run(settings: Settings, media: MediaLibrary, out: Path
               ) -> tuple[list[DemoRow], str, Observed]:
    from .service.server import serve

    cases = call_cases()
    rows = [DemoRow(c, _number(i + 1)) for i, c in enumerate(cases)]
    local_core = LocalCore()  # the mid-call webhook of type D / F
    receiver = WebhookReceiver(settings.master_key().webhook_secret(TENANT))
    async with AsyncExitStack() as stack:
        await local_core.start()
        stack.push_async_callback(local_core.stop)
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        numbers = []
        for row in rows:
            behaviour = SoftphoneBehaviour(mode=row.case.mode,  # type: ignore[arg-type]
                                           keys=parse_cues(row.case.keys))
            phone = await stack.enter_async_context(
                Softphone(("127.0.0.1", 0), behaviour, out / "softphones" / row.case.name))
            host, port = phone.address
            numbers.append((row.number, f"sip:qa@{host}:{port}"))
        service = replace(settings.service, numbers=tuple(numbers), listen_port=0,
                          poll_seconds=0.2)
        settings = replace(settings, service=service, recordings_dir=out / "recordings")
        key = await _create_tenant(settings)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        sip = SipSettings(answer_timeout=4.0)
        server = asyncio.create_task(serve(
            settings, media, lambda: EmbeddedBackend(sip, settings.recordings_dir / "calls"),
            ready=ready.set_result, stop=stop))
        try:
            url = await asyncio.wait_for(ready, 60)
            curl = await _trigger(url, key, rows, receiver, local_core.url,
                                  settings.root / "scenarios")
            await _collect(url, key, rows, receiver)
            observed = await _observe(url)
        finally:
            stop.set()
            await server
    return rows, curl, observed


async def _trigger(url: str, key: str, rows: list[DemoRow], receiver: WebhookReceiver,
                   core_url: str, scenarios_dir: Path) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    curl = ""
    async with aiohttp.ClientSession(headers=headers) as http:
        for index, row in enumerate(rows):
            scenario = load_scenario(scenarios_dir / row.case.scenario)
            params: dict[str, Any] = dict(row.case.params)
            if "callback_url" in scenario.params:  # the scenario calls the core mid-call
                params.setdefault("callback_url", core_url)
            body = {"scenario": scenario.name, "to": row.number, "params": params,
                    "callback_url": receiver.url, "reference": f"demo-{row.case.name}"}
            if index == 0:  # shown with the secret parameters masked, as the engine logs them
                shown = {**params, **{n: "*" * len(str(params[n]))
                                      for n in scenario.secret_params if n in params}}
                curl = _curl(url, key, {**body, "params": shown})
            async with http.post(f"{url}/v1/calls", json=body,
                                 headers={"Idempotency-Key": f"demo-{row.case.name}"}) as resp:
                answer = await resp.json()
                if resp.status != 201:
                    row.error = f"HTTP {resp.status}: {answer.get('detail')}"
                    continue
                row.call_id = answer["id"]
    return curl


async def _collect(url: str, key: str, rows: list[DemoRow], receiver: WebhookReceiver) -> None:
    waiting = [r for r in rows if r.call_id]
    click.echo(f"{len(waiting)} calls requested over HTTP; waiting for their webhooks …",
               err=True)
    try:
        async with asyncio.timeout(WEBHOOK_TIMEOUT):
            await asyncio.gather(*(receiver.terminal(r.call_id) for r in waiting))
    except TimeoutError:
        pass
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        for row in waiting:
            async with http.get(f"{url}/v1/calls/{row.call_id}") as resp:
                detail = await resp.json()
            row.state, row.outcome = detail["state"], detail["outcome"] or "-"
            row.evidence = detail.get("evidence")
            row.webhooks = sum(1 for e in receiver.events.values()
                               if e["call"]["id"] == row.call_id)


def run_demo_http(settings: Settings, media: MediaLibrary, out: Path) -> bool:
    """Run the HTTP demo and print its table; True when every call ended as expected."""
    started = time.perf_counter()
    media.render_all()
    rows, curl, observed = asyncio.run(_run(settings, media, out))
    click.echo("\nthe first request, as curl would send it:\n" + curl + "\n")
    header = (f"{'case':<22} {'to':<15} {'call':<29} {'state':<9} {'outcome':<14} "
              f"{'expected':<10} {'ok':<3} webhooks")
    click.echo(header + "\n" + "-" * len(header))
    failures = 0
    for row in rows:
        ok = row.outcome == row.case.expected and row.webhooks >= 1
        failures += not ok
        click.echo(f"{row.case.name:<22} {row.number:<15} {row.call_id or '-':<29} "
                   f"{row.state:<9} {row.outcome:<14} {row.case.expected:<10} "
                   f"{'✓' if ok else '✗':<3} {row.webhooks} signed, verified"
                   + (f"  evidence {row.evidence}" if row.evidence else "")
                   + (f"  error: {row.error}" if row.error else ""))
    table: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.call_id:
            table[(row.state, row.outcome)] = table.get((row.state, row.outcome), 0) + 1
    agrees = observed.calls == table
    shown = ", ".join(f"{state}/{outcome} {n}" for (state, outcome), n in sorted(observed.calls
                                                                                   .items()))
    click.echo(f"\n/metrics ars_calls: {shown or 'nothing'} "
               f"({'matches the table' if agrees else 'DIFFERS from the table'}); "
               f"/readyz: {observed.ready}")
    click.echo(f"\n{len(rows)} calls over HTTP: {len(rows) - failures} as expected, {failures} "
               f"unexpected ({time.perf_counter() - started:.1f} s); evidence and recordings "
               f"under {out}")
    return failures == 0 and agrees
