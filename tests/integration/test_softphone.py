"""The engine calls our QA softphone on loopback (real SIP and RTP sockets), and SIPp calls it.

Every wait is an awaited event bounded by ``asyncio.timeout``; ports are chosen free (port 0).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from inline_scenarios import LONG

from ars_engine.media.audio import rms_dbfs
from ars_engine.media.library import MediaLibrary
from ars_engine.qa.softphone import Softphone, SoftphoneBehaviour, parse_cues
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario, load_scenario_text
from ars_engine.scenario.timeline import CallResult
from ars_engine.telephony.embedded import CallAttempt, EmbeddedBackend, SipSettings
from ars_engine.telephony.outcomes import Outcome

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CALL_TIMEOUT = 60.0

def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(**kw: Any) -> SipSettings:
    return SipSettings(**{"answer_timeout": 10.0, "t1": 0.1, **kw})


@asynccontextmanager
async def phone_and_engine(behaviour: SoftphoneBehaviour, tmp_path: Path, **engine: Any
                           ) -> AsyncIterator[tuple[Softphone, EmbeddedBackend]]:
    async with Softphone(("127.0.0.1", 0), behaviour, tmp_path / "heard", t1=0.1) as phone, \
            EmbeddedBackend(settings(**engine)) as backend:
        yield phone, backend


async def dial(backend: EmbeddedBackend, phone: Softphone) -> CallAttempt:
    host, port = phone.address
    return await backend.dial(f"sip:qa@{host}:{port}")


async def run_scenario(attempt: CallAttempt, scenario_text_or_path: str | Path,
                       media: MediaLibrary, params: dict[str, str]) -> CallResult:
    assert attempt.channel is not None, attempt.reason
    if isinstance(scenario_text_or_path, Path):
        scenario = load_scenario(scenario_text_or_path, prompts=media.catalogue)
    else:
        scenario = load_scenario_text(scenario_text_or_path, prompts=media.catalogue)
    try:
        return await Interpreter(scenario, media).run(attempt.channel, params)
    finally:
        await attempt.channel.close()


def heard(report: dict[str, Any]) -> tuple[bytes, wave.Wave_read]:
    with wave.open(report["wav"], "rb") as w:
        return w.readframes(w.getnframes()), w


@pytest.mark.parametrize("dtmf", ["rfc4733", "inband"])
async def test_type_c_succeeds_with_the_code_typed_after_the_prompt(
        dtmf: str, real_media: MediaLibrary, tmp_path: Path) -> None:
    # In-band: the softphone answers without telephone-event, so the engine must use Goertzel.
    behaviour = SoftphoneBehaviour(keys=parse_cues(["123456"]), dtmf=dtmf,  # type: ignore[arg-type]
                                   telephone_event=dtmf == "rfc4733")
    async with asyncio.timeout(CALL_TIMEOUT), phone_and_engine(behaviour, tmp_path) as (
            phone, backend):
        attempt = await dial(backend, phone)
        assert attempt.outcome is Outcome.ANSWERED
        result = await run_scenario(attempt, ROOT / "scenarios" / "type_c.yaml", real_media,
                                    {"code": "123456"})
        report = await phone.reports.get()
    assert result.outcome == "success", result.describe()
    assert report["state"] == "completed" and report["ended_by"] == "remote"
    keys = [e for e in report["events"] if e["event"] == "key"]
    assert "".join(k["key"] for k in keys) == "123456"
    assert {k["method"] for k in keys} == {dtmf}
    first_prompt_end = next(e["t"] for e in report["events"] if e["event"] == "prompt_end")
    assert keys[0]["t"] >= first_prompt_end  # typed after the prompt ended, not at the answer
    kinds = [e["event"] for e in report["events"]]
    assert kinds[:3] == ["invite", "answered", "confirmed"] and kinds[-1] == "bye_received"


async def test_heard_wav_holds_the_engines_prompts_for_the_length_of_the_call(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    behaviour = SoftphoneBehaviour(keys=parse_cues(["@1.5=5"]), rings=1, ring_seconds=0.2)
    async with asyncio.timeout(CALL_TIMEOUT), phone_and_engine(behaviour, tmp_path) as (
            phone, backend):
        attempt = await dial(backend, phone)
        assert attempt.progress == [180]
        result = await run_scenario(attempt, LONG, real_media, {})
        report = await phone.reports.get()
    assert result.outcome == "success" and result.result["key"] == "5"
    pcm, w = heard(report)
    assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 8000, 2)
    assert rms_dbfs(pcm) > -40  # the goodbye prompt, not silence
    seconds = len(pcm) / 16000
    assert abs(seconds - report["talk_seconds"]) < 0.5
    assert report["heard_ms"] == len(pcm) // 16
    ringing = next(e["t"] for e in report["events"] if e["event"] == "ringing")
    answered = next(e["t"] for e in report["events"] if e["event"] == "answered")
    assert answered - ringing >= 0.2


@pytest.mark.parametrize(("mode", "outcome", "status"), [
    ("busy", Outcome.BUSY, 486),
    ("reject", Outcome.REJECTED, 603),
])
async def test_refusing_modes_map_to_engine_outcomes(
        mode: str, outcome: Outcome, status: int, tmp_path: Path) -> None:
    behaviour = SoftphoneBehaviour(mode=mode)  # type: ignore[arg-type]
    async with asyncio.timeout(CALL_TIMEOUT), phone_and_engine(behaviour, tmp_path) as (
            phone, backend):
        attempt = await dial(backend, phone)
        report = await phone.reports.get()
    assert (attempt.outcome, attempt.status, attempt.channel) == (outcome, status, None)
    assert report["state"] == ("busy" if mode == "busy" else "rejected")
    assert [e["event"] for e in report["events"]] == ["invite", "rejected"]
    assert report["wav"] is None


async def test_never_answering_is_canceled_by_the_engine_as_no_answer(tmp_path: Path) -> None:
    behaviour = SoftphoneBehaviour(mode="never")
    async with asyncio.timeout(CALL_TIMEOUT), phone_and_engine(
            behaviour, tmp_path, answer_timeout=2.0) as (phone, backend):
        attempt = await dial(backend, phone)
        report = await phone.reports.get()
    assert attempt.outcome is Outcome.NO_ANSWER and attempt.status == 487
    assert attempt.progress == [180]
    assert report["state"] == "canceled" and report["ended_by"] == "remote"
    cancel = next(e["t"] for e in report["events"] if e["event"] == "cancel")
    assert 1.5 <= cancel <= 4.0


async def test_softphone_hangup_during_a_long_scenario_is_callee_hangup(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    behaviour = SoftphoneBehaviour(hangup_after=2.0)
    async with asyncio.timeout(CALL_TIMEOUT), phone_and_engine(behaviour, tmp_path) as (
            phone, backend):
        attempt = await dial(backend, phone)
        result = await run_scenario(attempt, LONG, real_media, {})
        report = await phone.reports.get()
    assert result.outcome == "callee_hangup"
    assert 1500 <= result.duration_ms <= 4000
    assert report["state"] == "completed" and report["ended_by"] == "local"
    bye = next(e["t"] for e in report["events"] if e["event"] == "bye_sent")
    answered = next(e["t"] for e in report["events"] if e["event"] == "answered")
    assert bye - answered == pytest.approx(2.0, abs=0.3)


@pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp is not installed")
async def test_sipp_uac_calls_the_softphone_and_hangs_up(tmp_path: Path) -> None:
    behaviour = SoftphoneBehaviour(rings=1, ring_seconds=0.1)
    async with asyncio.timeout(CALL_TIMEOUT), \
            Softphone(("127.0.0.1", 0), behaviour, tmp_path / "heard") as phone:
        host, port = phone.address
        process = await asyncio.create_subprocess_exec(
            "sipp", "-sn", "uac", f"{host}:{port}", "-i", "127.0.0.1",
            "-p", str(free_udp_port()), "-m", "1", "-nostdin", "-timeout", "30s", "-trace_err",
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        try:
            _, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        report = await phone.reports.get()
    errors = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*errors*"))
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:] + errors
    assert report["state"] == "completed" and report["ended_by"] == "remote"
    assert [e["event"] for e in report["events"]][:4] == ["invite", "ringing", "answered",
                                                           "confirmed"]


async def test_cli_softphone_prints_one_json_line_per_call_and_exits_after_n(
        tmp_path: Path) -> None:
    port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ars_engine.cli", "softphone", "--listen", f"127.0.0.1:{port}",
        "--mode", "busy", "--calls", "1", "--recordings", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            assert process.stderr is not None and process.stdout is not None
            banner = await process.stderr.readline()  # listening: the socket is open
            assert b"listening" in banner
            async with EmbeddedBackend(settings()) as backend:
                attempt = await backend.dial(f"sip:qa@127.0.0.1:{port}")
            line = await process.stdout.readline()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert attempt.outcome is Outcome.BUSY
    report = json.loads(line)
    assert report["state"] == "busy" and report["events"][-1] == {
        "t": report["events"][-1]["t"], "event": "rejected", "status": 486}


async def test_options_keepalive_sees_the_trunk_up_then_down(tmp_path: Path) -> None:
    # Our softphone answers OPTIONS, so it can stand in for a trunk (outbound proxy).
    phone = Softphone(("127.0.0.1", 0), SoftphoneBehaviour(), tmp_path / "heard", t1=0.05)
    await phone.start()
    try:
        settings = SipSettings(proxy=phone.address, keepalive=0.2, t1=0.02)
        async with EmbeddedBackend(settings) as backend:
            trunk = backend.trunk
            assert trunk is not None
            async with asyncio.timeout(5):
                await trunk.changed.wait()
            assert trunk.status is not None and trunk.status.up and trunk.status.status == 200
            trunk.changed.clear()
            await phone.close()  # the trunk goes away: OPTIONS go unanswered
            async with asyncio.timeout(10):
                await trunk.changed.wait()  # Timer F = 64·T1 = 1.28 s
            assert trunk.status is not None and not trunk.status.up
    finally:
        await phone.close()
