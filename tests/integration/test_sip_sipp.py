"""The embedded SIP backend against SIPp (a real third-party SIP peer) on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from inline_scenarios import LONG, SHORT

from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario, load_scenario_text
from ars_engine.telephony.embedded import CallAttempt, EmbeddedBackend, SipSettings
from ars_engine.telephony.outcomes import Outcome

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None,
                       reason="SIPp is not installed: `make setup` installs sip-tester"),
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SIPP_DIR = HERE / "sipp"
SIPP_TIMEOUT = 60.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sipp:
    port: int
    process: asyncio.subprocess.Process
    workdir: Path
    media_port: int = 0

    async def finished(self) -> int:
        """Wait for SIPp to end (it stops after one call) and return its exit status."""
        await asyncio.wait_for(self.process.wait(), SIPP_TIMEOUT)
        return int(self.process.returncode or 0)

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:]
                         for p in self.workdir.glob("*errors.log"))


@asynccontextmanager
async def sipp_uas(scenario: str | None, workdir: Path) -> AsyncIterator[Sipp]:
    """SIPp as the callee: ``scenario`` is a file in tests/integration/sipp (None: built-in uas)."""
    port = free_udp_port()
    media_port = free_udp_port()
    args = ["sipp", "-i", "127.0.0.1", "-p", str(port), "-mp", str(media_port), "-m", "1",
            "-nostdin", "-timeout", f"{int(SIPP_TIMEOUT)}s", "-trace_err"]
    args += ["-sf", str(SIPP_DIR / scenario)] if scenario else ["-sn", "uas"]
    process = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    sipp = Sipp(port, process, workdir, media_port)
    try:
        yield sipp
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def settings(**kw: object) -> SipSettings:
    # T1 = 0.1 s: the first INVITE may reach SIPp before its socket is open; the retransmission
    # (Timer A) then arrives 100 ms later. Timer B becomes 6.4 s.
    base: dict[str, object] = {"answer_timeout": 10.0, "t1": 0.1}
    base.update(kw)
    return SipSettings(**base)  # type: ignore[arg-type]


async def dial(backend: EmbeddedBackend, sipp: Sipp) -> CallAttempt:
    return await backend.dial(f"sip:qa@127.0.0.1:{sipp.port}")


async def test_answered_call_runs_a_scenario_and_the_engine_hangs_up(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    scenario = load_scenario_text(SHORT, prompts=real_media.catalogue)
    async with sipp_uas(None, tmp_path) as sipp, EmbeddedBackend(settings()) as backend:
        attempt = await dial(backend, sipp)
        assert attempt.outcome is Outcome.ANSWERED and attempt.status == 200
        assert 180 in attempt.progress
        assert attempt.channel is not None
        result = await Interpreter(scenario, real_media).run(attempt.channel, {})
        await attempt.channel.close()
        assert result.outcome == "success"
        sent = attempt.channel.media.receiver  # nothing is expected back from SIPp's uas
        assert sent.stats.duplicates == 0
        assert await sipp.finished() == 0, sipp.errors()  # SIPp saw our ACK and BYE


async def test_callee_hangup_ends_the_scenario_as_callee_hangup(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    scenario = load_scenario_text(LONG, prompts=real_media.catalogue)
    async with sipp_uas("answer_bye_from_callee.xml", tmp_path) as sipp, \
            EmbeddedBackend(settings()) as backend:
        attempt = await dial(backend, sipp)
        assert attempt.channel is not None
        result = await Interpreter(scenario, real_media).run(attempt.channel, {})
        await attempt.channel.close()
        assert result.outcome == "callee_hangup"
        assert 1000 <= result.duration_ms <= 5000  # SIPp hangs up 1.5 s after the ACK
        assert await sipp.finished() == 0, sipp.errors()  # our 200 OK to its BYE arrived


async def test_reinvite_moving_the_media_is_answered_and_the_stream_follows(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    scenario = load_scenario_text(LONG, prompts=real_media.catalogue)
    async with sipp_uas("reinvite_moves_media.xml", tmp_path) as sipp, \
            EmbeddedBackend(settings()) as backend:
        attempt = await dial(backend, sipp)
        assert attempt.channel is not None
        media = attempt.channel.media
        assert media.remote == ("127.0.0.1", sipp.media_port)
        result = await Interpreter(scenario, real_media).run(attempt.channel, {})
        moved_to = media.remote  # SIPp re-INVITEd, got our 200, ACKed, then hung up
        await attempt.channel.close()
        assert result.outcome == "callee_hangup"  # the call survived the re-INVITE
        assert moved_to == ("127.0.0.1", sipp.media_port + 2)
        assert await sipp.finished() == 0, sipp.errors()  # SIPp checked our 200's SDP


@pytest.mark.parametrize(("xml", "outcome", "status"), [
    ("busy.xml", Outcome.BUSY, 486),
    ("unavailable.xml", Outcome.NETWORK_ERROR, 503),
])
async def test_final_error_responses_map_to_outcomes_and_are_acked(
        xml: str, outcome: Outcome, status: int, tmp_path: Path) -> None:
    async with sipp_uas(xml, tmp_path) as sipp, EmbeddedBackend(settings()) as backend:
        attempt = await dial(backend, sipp)
        assert (attempt.outcome, attempt.status, attempt.channel) == (outcome, status, None)
        assert await sipp.finished() == 0, sipp.errors()  # SIPp received the ACK


async def test_ringing_without_answer_is_canceled_after_the_answer_timeout(
        tmp_path: Path) -> None:
    async with sipp_uas("ring_no_answer.xml", tmp_path) as sipp, \
            EmbeddedBackend(settings(answer_timeout=1.5)) as backend:
        attempt = await dial(backend, sipp)
        assert attempt.outcome is Outcome.NO_ANSWER and attempt.status == 487
        assert attempt.progress == [180]
        assert await sipp.finished() == 0, sipp.errors()  # CANCEL, 200, 487, ACK in order


async def test_digest_challenge_is_answered_with_credentials(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    scenario = load_scenario_text(SHORT, prompts=real_media.catalogue)
    async with sipp_uas("challenge.xml", tmp_path) as sipp, \
            EmbeddedBackend(settings(username="ars", password="s3cret")) as backend:
        attempt = await dial(backend, sipp)
        assert attempt.outcome is Outcome.ANSWERED, attempt.reason
        assert attempt.channel is not None
        await Interpreter(scenario, real_media).run(attempt.channel, {})
        await attempt.channel.close()
        assert await sipp.finished() == 0, sipp.errors()  # verifyauth accepted our digest


async def test_cli_call_takes_the_trunk_and_its_credentials_from_the_config_file(
        tmp_path: Path) -> None:
    """`ars-engine call --config … --trunk …`: the proxy and the digest credentials come from
    the file (the password through password_env); SIPp's verifyauth checks them."""
    scenario = tmp_path / "short.yaml"
    scenario.write_text(SHORT, encoding="utf-8")
    async with sipp_uas("challenge.xml", tmp_path) as sipp:
        config = tmp_path / "ars.toml"
        config.write_text(textwrap.dedent(f"""
            [sip]
            t1 = 0.1
            [trunks.lab]
            proxy = "127.0.0.1:{sipp.port}"
            username = "ars"
            password_env = "LAB_TRUNK_PASSWORD"
            answer_timeout = 10
            keepalive = 0  # SIPp's one-call script would take an OPTIONS as unexpected
            """), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
        env.update(LAB_TRUNK_PASSWORD="s3cret", ARS_RECORDINGS_DIR=str(tmp_path / "rec"),
                   ARS_TTS_ONLINE="0")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ars_engine.cli", "call", "sip:qa@lab.invalid",
            "--scenario", str(scenario), "--config", str(config), "--trunk", "lab", "--json",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(SIPP_TIMEOUT):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        result = json.loads(out)
        assert result["outcome"] == "answered" and result["sip_status"] == 200, result
        assert result["scenario"]["outcome"] == "success"
        assert b"s3cret" not in out + err
        assert await sipp.finished() == 0, sipp.errors()  # verifyauth accepted our digest


async def test_silence_ends_after_timer_b_as_network_error() -> None:
    port = free_udp_port()  # nothing listens there
    async with EmbeddedBackend(settings(t1=0.05)) as backend:
        attempt = await backend.dial(f"sip:qa@127.0.0.1:{port}")
    assert attempt.outcome is Outcome.NETWORK_ERROR and attempt.status is None


async def test_rfc2833_keys_from_sipp_drive_type_c_to_success(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "type_c.yaml", prompts=real_media.catalogue)
    async with sipp_uas("answer_dtmf.xml", tmp_path) as sipp, \
            EmbeddedBackend(settings()) as backend:
        attempt = await dial(backend, sipp)
        assert attempt.channel is not None
        result = await Interpreter(scenario, real_media).run(attempt.channel,
                                                            {"code": "123456"})
        await attempt.channel.close()
        assert result.outcome == "success", result.describe()
        keys = [e for e in result.timeline if e.kind == "key"]
        assert len(keys) == 6 and all(e.detail["key"] == "*" for e in keys)  # masked
        assert await sipp.finished() == 0, sipp.errors()


async def test_malformed_datagrams_never_stop_the_sip_socket(tmp_path: Path) -> None:
    async with sipp_uas("busy.xml", tmp_path) as sipp, EmbeddedBackend(settings()) as backend:
        assert backend.endpoint is not None
        host, port = backend.endpoint.local
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            for garbage in (b"\x00\xff" * 40, b"INVITE\r\n\r\n", b"SIP/2.0 99999 x\r\n\r\n",
                            "INVITE sip:ü SIP/2.0\r\nVia: ?\r\n\r\n".encode()):
                junk.sendto(garbage, (host, port))
        attempt = await dial(backend, sipp)  # the same socket still places calls
        assert attempt.outcome is Outcome.BUSY
        assert backend.endpoint.bad_datagrams >= 3
