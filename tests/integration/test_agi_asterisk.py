"""The FastAGI server and AgiChannel against a real Asterisk 22 (asterisk_peer.py).

Each call is originated over AMI (a few raw lines: Login, Originate with ``ChannelId`` = our
call id, Logoff) to ``Local/s@<callee context>`` with dialplan ``ars-out``, which opens
``AGI(agi://127.0.0.1:<agi_port>/scenario)``; the server routes the connection to the expected
call by its ``agi_uniqueid``. A shipped scenario then runs on an :class:`AgiChannel`. The callee
half of the Local channel plays the person: ``callee-keys`` sends ``${KEYS}`` as DTMF after
``${KEYS_DELAY}`` s, ``callee-hangup`` hangs up after ``${HANGUP_DELAY}`` s.

Prompts are rendered by the tests' tone TTS (60 ms per character) so the tests need neither
espeak-ng nor a network, and the prompt lengths are known.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from asterisk_peer import AsteriskPeer

from ars_engine.errors import AgiCommandFailed, CalleeHangup
from ars_engine.media.clip import Clip, PromptAudio
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario
from ars_engine.scenario.timeline import CallResult
from ars_engine.telephony.agi.channel import AgiChannel
from ars_engine.telephony.agi.server import FastAgiServer
from ars_engine.telephony.agi.sounds import SoundFiles

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
AMI_TIMEOUT = 10.0  # seconds for the AMI login and the Originate to be queued
ARRIVAL_TIMEOUT = 15.0  # seconds from Originate to the AGI connection
CALL_TIMEOUT = 120.0  # seconds for a whole scenario run (type C retries take ~30 s)
CODE = "482731"
# Asterisk's verbose log line for every file it plays (file.c ast_streamfile)
PLAYING = re.compile(r"Playing '([^']+)'")


@dataclass
class Rig:
    peer: AsteriskPeer
    server: FastAgiServer
    sounds: SoundFiles
    recordings: Path
    media: MediaLibrary


@pytest.fixture
async def rig(asterisk_peer: AsteriskPeer, tone_media: MediaLibrary,
              tmp_path: Path) -> AsyncIterator[Rig]:
    sounds = SoundFiles(asterisk_peer.sounds_dir)
    async with FastAgiServer("127.0.0.1", asterisk_peer.agi_port) as server:
        yield Rig(asterisk_peer, server, sounds, tmp_path / "recordings", tone_media)


# -- AMI, the smallest part needed: Login, Originate (async), Logoff ---------------------------
async def _action(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  headers: list[tuple[str, str]]) -> dict[str, str]:
    writer.write("".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n")
    response: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().rstrip("\r\n").partition(": ")
        response[key] = value
    return response


async def originate(peer: AsteriskPeer, channel_id: str, callee: str,
                    variables: Mapping[str, str]) -> None:
    """Originate ``Local/s@<callee>`` into ``ars-out`` with ``ChannelId`` = ``channel_id``;
    ``__`` makes each variable reach the callee half of the Local channel."""
    reader, writer = await asyncio.open_connection(peer.ami_host, peer.ami_port)
    try:
        async with asyncio.timeout(AMI_TIMEOUT):
            await reader.readline()  # "Asterisk Call Manager/11.0.0", no blank line
            login = await _action(reader, writer, [
                ("Action", "Login"), ("Username", peer.ami_user), ("Secret", peer.ami_secret),
                ("Events", "off")])
            assert login.get("Response") == "Success", login
            queued = await _action(reader, writer, [
                ("Action", "Originate"), ("Channel", f"Local/s@{callee}"),
                ("Context", "ars-out"), ("Exten", "s"), ("Priority", "1"),
                ("ChannelId", channel_id), ("Timeout", "10000"), ("Async", "true"),
                *[("Variable", f"__{k}={v}") for k, v in variables.items()]])
            assert queued.get("Response") == "Success", queued
            await _action(reader, writer, [("Action", "Logoff")])
    finally:
        writer.close()
        await writer.wait_closed()


@dataclass
class Call:
    result: CallResult
    prompt_files: list[Path]


async def run_call(rig: Rig, scenario: str, params: Mapping[str, object], callee: str,
                   **variables: str) -> Call:
    """Originate a call, run ``scenario`` on its AGI channel, and return what happened."""
    call_id = f"ars-{uuid.uuid4().hex[:12]}"
    interpreter = Interpreter(load_scenario(SCENARIOS / f"{scenario}.yaml",
                                            prompts=rig.media.catalogue), rig.media)
    async with asyncio.timeout(CALL_TIMEOUT), rig.server.expect(call_id) as expected:
        await originate(rig.peer, call_id, callee, variables)
        conn = await expected.connection(timeout=ARRIVAL_TIMEOUT)
        async with AgiChannel(conn, rig.sounds, recordings_dir=rig.recordings) as channel:
            result = await interpreter.run(channel, params, call_id=call_id)
            files = channel.prompt_files
    return Call(result, files)


def events(result: CallResult, kind: str) -> list[dict[str, object]]:
    return [e.detail for e in result.timeline if e.kind == kind]


def asterisk_log(peer: AsteriskPeer) -> str:
    """Asterisk's messages.log (verbose included; written line by line, unlike the console
    copy, which is flushed only when Asterisk stops)."""
    return (peer.run_dir / "var" / "log" / "messages.log").read_text(errors="replace")


def played_files(peer: AsteriskPeer) -> list[Path]:
    """Every file Asterisk played; it names them ``<path>.<format>`` (``x.slin`` for x.sln)."""
    return [Path(p) for p in PLAYING.findall(asterisk_log(peer))]


# -- scenarios ---------------------------------------------------------------------------------
async def test_type_c_right_code_succeeds_with_keys_typed_during_a_prompt(rig: Rig) -> None:
    # Keys come 1 s after answer, during the welcome (no barge-in): each one stops STREAM FILE,
    # is kept, and the prompt resumes where it stopped; the gather then takes them.
    call = await run_call(rig, "type_c", {"code": CODE}, "callee-keys", KEYS=CODE,
                          KEYS_DELAY="1")
    result = call.result
    assert result.outcome == "success", result
    assert result.result == {"verified": True}
    welcome = events(result, "prompt_started")[0]
    assert events(result, "prompt_ended")[0] == {"played_ms": pytest.approx(
        welcome["duration_ms"], abs=40), "interrupted": False}  # played in full despite keys
    keys = [e["key"] for e in events(result, "key")]
    assert len(keys) == 6 and set(keys) == {"*"}  # secret gather: masked in the timeline
    # Asterisk really played our files: static prompts by content hash, the welcome (built
    # with the {company} parameter) from a random-named per-call file, since deleted.
    played = played_files(rig.peer)
    assert {p.parent for p in played} == {rig.sounds.static_dir, rig.sounds.calls_dir}
    assert call.prompt_files and not any(p.exists() for p in call.prompt_files)
    assert {p.with_suffix(".sln") for p in played if p.parent == rig.sounds.calls_dir} == \
        set(call.prompt_files)


async def test_type_c_wrong_code_three_times_fails(rig: Rig) -> None:
    wrong = "111111"
    call = await run_call(rig, "type_c", {"code": CODE}, "callee-keys", KEYS=wrong * 3,
                          KEYS_DELAY="1")
    result = call.result
    assert result.outcome == "failed", result
    assert result.result == {"verified": False, "reason": "wrong_code"}
    assert [e["end"] for e in events(result, "gather_ended")] == ["max_digits"] * 3


async def test_callee_hanging_up_mid_prompt_ends_as_callee_hangup(rig: Rig) -> None:
    call = await run_call(rig, "type_c", {"code": CODE}, "callee-hangup", HANGUP_DELAY="1")
    result = call.result
    assert result.outcome == "callee_hangup", result
    assert result.error is None
    assert events(result, "hangup") == [{"by": "callee"}]
    assert events(result, "prompt_ended") == []  # the welcome never ended normally
    assert not any(p.exists() for p in call.prompt_files)


async def test_type_a_code_plays_from_a_file_whose_name_tells_nothing(rig: Rig) -> None:
    call = await run_call(rig, "type_a", {"code": CODE}, "callee-keys")  # presses nothing
    result = call.result
    assert result.outcome == "success", result
    read_code = events(result, "prompt_started")[1]
    assert read_code["prompts"] == ["code_is", "suffix_imnida"]
    assert events(result, "prompt_ended")[1]["played_ms"] == pytest.approx(
        read_code["duration_ms"], abs=40)
    assert CODE not in asterisk_log(rig.peer)
    per_call = [p for p in played_files(rig.peer) if p.parent == rig.sounds.calls_dir]
    assert len(per_call) == 2  # the welcome (company name) and the code
    for path in per_call:
        assert re.fullmatch(r"[0-9a-f]{32}", path.stem)
        assert not path.with_suffix(".sln").exists()


async def test_type_e_consent_is_recorded_by_mixmonitor(rig: Rig) -> None:
    params = {"merchant": "에이알에스", "bank": "국민은행", "holder": "홍길동",
              "account_tail": "1234", "debit_day": "25", "amount": "15000"}
    call = await run_call(rig, "type_e", params, "callee-keys", KEYS="1", KEYS_DELAY="8")
    result = call.result
    assert result.outcome == "success", result
    assert len(result.recordings) == 1
    recording = Path(result.recordings[0])
    assert recording.parent == rig.recordings.resolve()
    stopped = events(result, "recording_stopped")[0]
    assert isinstance(stopped["duration_ms"], int) and stopped["duration_ms"] > 1000
    assert recording.is_file() and recording.read_bytes()[:4] == b"RIFF"


# -- the channel's own edge cases --------------------------------------------------------------
async def test_missing_file_is_a_failure_not_a_hangup(rig: Rig,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    call_id = f"ars-{uuid.uuid4().hex[:12]}"
    prompt = PromptAudio("x", (Clip.from_pcm(bytes(16000)),), ("x",))
    async with asyncio.timeout(CALL_TIMEOUT), rig.server.expect(call_id) as expected:
        await originate(rig.peer, call_id, "callee-keys", {})
        conn = await expected.connection(timeout=ARRIVAL_TIMEOUT)
        async with AgiChannel(conn, rig.sounds) as channel:
            async def nowhere(_prompt: PromptAudio) -> Path:
                return rig.sounds.sounds_dir / "no-such-file"

            monkeypatch.setattr(channel._sounds, "publish", nowhere)
            with pytest.raises(AgiCommandFailed) as failure:
                await channel.play(prompt)
            assert not isinstance(failure.value, CalleeHangup)
            assert channel.is_up  # the NOOP showed the channel alive
            await channel.hangup()
            assert not channel.is_up
