"""``ars-engine demo --calls``: real calls on loopback, the engine calling the QA softphone.

Every shipped scenario's passing path, plus a busy and a never-answered softphone, as real SIP
and RTP between two sockets of this machine. The softphone types its keys after the engine's
prompts end (RFC 4733); all calls run at once, so the demo takes about as long as the longest
scenario (type E's consent text).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from .demo import LocalCore
from .demo_cases import DEMO_CASES
from .qa.softphone import Softphone, SoftphoneBehaviour, parse_cues
from .scenario.corehttp import AiohttpCoreClient
from .scenario.interpreter import Interpreter
from .scenario.loader import load_scenario
from .telephony.embedded import EmbeddedBackend, SipSettings
from .telephony.outcomes import CallAttempt

if TYPE_CHECKING:
    from .config import Settings
    from .media.library import MediaLibrary

PASSING = ("a_code_heard", "b_key_then_code", "c_code_ok", "d_pin_ok", "e_agreed",
           "f_event_agreed", "f_amount_ok")
SOFTPHONE_REPORT_TIMEOUT = 60.0


class Dialer(Protocol):
    """A backend as the demo uses it (EmbeddedBackend, AsteriskBackend)."""

    async def dial(self, target: str) -> CallAttempt: ...


@dataclass(slots=True)
class CallCase:
    name: str
    scenario: str
    params: dict[str, str]
    keys: tuple[str, ...]
    expected: str
    mode: str = "answer"


@dataclass(slots=True)
class CallRow:
    case: CallCase
    outcome: str
    sip_status: int | None
    heard_wav: str | None
    recordings: list[str] = field(default_factory=list)
    error: str | None = None


def call_cases() -> list[CallCase]:
    """The passing path of each shipped scenario, then busy and never-answered phones."""
    by_name = {c.name: c for c in DEMO_CASES}
    cases = [CallCase(f"{n}_call", by_name[n].scenario, dict(by_name[n].params),
                      tuple(k for k in by_name[n].keys if k), by_name[n].expected_outcome)
             for n in PASSING]
    c = by_name["c_code_ok"]
    cases.append(CallCase("busy_call", c.scenario, dict(c.params), (), "busy", mode="busy"))
    cases.append(CallCase("no_answer_call", c.scenario, dict(c.params), (), "no_answer",
                          mode="never"))
    return cases


async def run_call_case(case: CallCase, backend: Dialer, media: MediaLibrary,
                        out: Path, scenarios_dir: Path, core_url: str,
                        core: AiohttpCoreClient, *, listen: tuple[str, int] = ("127.0.0.1", 0),
                        target: str | None = None) -> CallRow:
    """One real call: a softphone behaving as ``case`` says, the engine calling it. The
    softphone listens on ``listen``; the backend dials ``target`` with ``{host}`` and ``{port}``
    filled in with the softphone's address (default: its SIP URI; through Asterisk e.g.
    ``PJSIP/softphone/sip:qa@{host}:{port}``)."""
    scenario = load_scenario(scenarios_dir / case.scenario, prompts=media.catalogue)
    params: dict[str, object] = dict(case.params)
    if "callback_url" in scenario.params and "callback_url" not in params:
        params["callback_url"] = core_url
    behaviour = SoftphoneBehaviour(mode=case.mode, keys=parse_cues(case.keys))  # type: ignore[arg-type]
    async with Softphone(listen, behaviour, out / case.name) as phone:
        host, port = phone.address
        attempt = await backend.dial((target or "sip:qa@{host}:{port}").format(host=host,
                                                                                 port=port))
        if attempt.channel is None:
            return CallRow(case, attempt.outcome.value, attempt.status, None)
        try:
            result = await Interpreter(scenario, media, core=core).run(attempt.channel, params)
        finally:
            await attempt.channel.close()
        report: dict[str, Any] = {}
        try:
            async with asyncio.timeout(SOFTPHONE_REPORT_TIMEOUT):
                report = await phone.reports.get()
        except TimeoutError:
            pass
        return CallRow(case, result.outcome, attempt.status, report.get("wav"),
                       result.recordings, result.error)


async def _run_all(media: MediaLibrary, out: Path, scenarios_dir: Path) -> list[CallRow]:
    local = LocalCore()
    await local.start()
    core = AiohttpCoreClient()
    sip = SipSettings(answer_timeout=4.0)
    try:
        async with EmbeddedBackend(sip, out / "engine") as backend:
            cases = call_cases()
            click.echo(f"placing {len(cases)} calls at once on loopback …", err=True)
            return list(await asyncio.gather(*(
                run_call_case(c, backend, media, out, scenarios_dir, local.url, core)
                for c in cases)))
    finally:
        await core.close()
        await local.stop()


def run_demo_calls(settings: Settings, media: MediaLibrary, out: Path) -> bool:
    """Run the real-call demo and print its table; True when every outcome was expected."""
    started = time.perf_counter()
    media.render_all()
    rows = asyncio.run(_run_all(media, out, settings.root / "scenarios"))
    header = (f"{'scenario':<28} {'call':<24} {'expected':<10} {'outcome':<14} {'ok':<3} "
              "what the softphone heard")
    click.echo("\n" + header + "\n" + "-" * len(header))
    failures = 0
    for row in rows:
        ok = row.outcome == row.case.expected
        failures += not ok
        click.echo(f"{row.case.scenario:<28} {row.case.name:<24} {row.case.expected:<10} "
                   f"{row.outcome:<14} {'✓' if ok else '✗':<3} {row.heard_wav or '-'}")
        for path in row.recordings:
            click.echo(f"{'':<28} recording: {path}")
        if row.error:
            click.echo(f"{'':<28} error: {row.error}")
    click.echo(f"\n{len(rows)} real calls: {len(rows) - failures} as expected, {failures} "
               f"unexpected ({time.perf_counter() - started:.1f} s)")
    return failures == 0
