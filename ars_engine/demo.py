"""``make demo``: every shipped scenario on its passing and failing paths, on simulated calls.

A small local "core" (aiohttp on 127.0.0.1, a free port) receives the mid-call webhooks, so the
demo exercises real HTTP. Later issues turn these runs into real calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from aiohttp import web

from .demo_cases import DEMO_CASES, DemoCase
from .scenario.corehttp import AiohttpCoreClient
from .scenario.interpreter import Interpreter
from .scenario.loader import load_scenario
from .scenario.timeline import CallResult
from .telephony.simulated import KeyScript, SimulatedChannel

if TYPE_CHECKING:
    from .config import Settings
    from .media.library import MediaLibrary


class LocalCore:
    """A loopback stand-in for the verification core: records webhook bodies."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        return web.json_response({"ok": True, "ticket_id": f"T{len(self.received):04d}"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()  # a free port
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/webhook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def run_case(case: DemoCase, media: MediaLibrary, out: Path, core_url: str,
                   core: AiohttpCoreClient, scenarios_dir: Path) -> tuple[CallResult, Path]:
    """Run one demo case; return its result and the WAV of what the callee heard."""
    scenario = load_scenario(scenarios_dir / case.scenario, prompts=media.catalogue)
    params: dict[str, object] = dict(case.params)
    if "callback_url" in scenario.params and "callback_url" not in params:
        params["callback_url"] = core_url
    channel = SimulatedChannel(KeyScript.parse(list(case.keys), case.hangup_at),
                               call_id=f"demo-{case.name}", recordings_dir=out)
    result = await Interpreter(scenario, media, core=core).run(channel, params)
    wav = channel.write_heard_wav(out / f"{case.name}.wav")
    return result, wav


async def _run_all(media: MediaLibrary, out: Path, scenarios_dir: Path
                   ) -> list[tuple[DemoCase, CallResult, Path]]:
    local = LocalCore()
    await local.start()
    client = AiohttpCoreClient()
    rows = []
    try:
        for i, case in enumerate(DEMO_CASES, 1):
            click.echo(f"[{i}/{len(DEMO_CASES)}] {case.name} …", err=True)
            result, wav = await run_case(case, media, out, local.url, client, scenarios_dir)
            rows.append((case, result, wav))
    finally:
        await client.close()
        await local.stop()
    click.echo(f"local core received {len(local.received)} webhook(s)", err=True)
    return rows


def _shown(path: Path) -> str:
    """A path relative to the current folder when it is inside it (shorter table rows)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_demo(settings: Settings, media: MediaLibrary, out: Path) -> bool:
    """Run every demo case, print the summary table; True when every outcome was expected."""
    started = time.perf_counter()
    click.echo("pre-rendering prompts (cached after the first run) …", err=True)
    report = media.render_all()
    click.echo(f"  {report.total} prompts and clips ready ({report.rendered} rendered now, "
               f"{report.seconds:.1f} s)", err=True)
    rows = asyncio.run(_run_all(media, out, settings.root / "scenarios"))
    header = f"{'scenario':<30} {'path':<28} {'expected':<14} {'outcome':<14} {'ok':<3} heard WAV"
    click.echo("")
    click.echo(header)
    click.echo("-" * len(header))
    failures = 0
    for case, result, wav in rows:
        ok = result.outcome == case.expected_outcome and (
            case.expected_result is None
            or all(result.result.get(k) == v for k, v in case.expected_result.items()))
        failures += not ok
        click.echo(f"{case.scenario:<30} {case.name:<28} {case.expected_outcome:<14} "
                   f"{result.outcome:<14} {'✓' if ok else '✗':<3} {_shown(wav)}")
        if not ok:
            click.echo(f"    result: {json.dumps(result.result, ensure_ascii=False)}"
                       f" error: {result.error}")
    scenarios = len({c.scenario for c, _, _ in rows})
    click.echo("")
    click.echo(f"{len(rows)} runs of {scenarios} scenarios: {len(rows) - failures} as expected, "
               f"{failures} unexpected ({time.perf_counter() - started:.1f} s)")
    return failures == 0
