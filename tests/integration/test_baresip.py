"""The engine calls baresip (a real third-party softphone) on loopback.

baresip auto-answers (``answermode=auto``), sends its audio from a silent WAV, records what it
receives (``sndfile``: ``dump-…-dec.wav``) and presses keys on command over ``ctrl_tcp``
(``sndcode``, RFC 4733).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ars_engine.media.audio import rms_dbfs
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario
from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("baresip") is None,
                       reason="baresip is not installed: `make setup` installs it"),
]

ROOT = Path(__file__).resolve().parents[2]
KEY_GAP = 0.3  # seconds between two presses: how fast the "person" types
READY_TIMEOUT = 20.0


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def baresip(tmp_path: Path) -> AsyncIterator[tuple[int, int, Path]]:
    """Start baresip with its own config dir; yield (SIP port, ctrl_tcp port, recordings dir)."""
    sip_port, ctrl_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    conf, rec = tmp_path / "baresip", tmp_path / "baresip-rec"
    conf.mkdir()
    rec.mkdir()
    with wave.open(str(conf / "silence.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(8000 * 2 * 60))
    (conf / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
audio_player aufile,{conf}/played.wav
audio_source aufile,{conf}/silence.wav
audio_alert aufile,{conf}/played.wav
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
snd_path {rec}
""")
    (conf / "accounts").write_text(
        "<sip:qa@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU\n")
    process = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(conf), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while b"baresip is ready" not in await process.stdout.readline():
                pass
        drain = asyncio.create_task(process.stdout.read())  # keep its pipe from filling
        yield sip_port, ctrl_port, rec
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        if "drain" in locals():
            await drain


async def press(ctrl_port: int, keys: str) -> None:
    """Press keys on baresip through ctrl_tcp (netstring-framed JSON commands)."""
    for i, key in enumerate(keys):
        if i:
            await asyncio.sleep(KEY_GAP)  # pacing a person's typing, not synchronisation
        reader, writer = await asyncio.open_connection("127.0.0.1", ctrl_port)
        body = json.dumps({"command": "sndcode", "params": key, "token": str(i)}).encode()
        writer.write(b"%d:%s," % (len(body), body))
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await read_response(reader, str(i))
        writer.close()
        assert answer.get("ok") is True, answer


async def read_response(reader: asyncio.StreamReader, token: str) -> dict[str, object]:
    """The response to our command: ctrl_tcp also sends its events (CALL_RTPESTAB…) to every
    connected client, framed the same way; skip them."""
    while True:
        length = int((await reader.readuntil(b":"))[:-1])
        message = json.loads((await reader.readexactly(length + 1))[:-1])
        if message.get("response") and message.get("token") == token:
            return dict(message)


@pytest.mark.parametrize(("scenario", "params", "keys", "expected"), [
    ("type_c.yaml", {"code": "123456"}, "123456", {"verified": True}),
    ("type_e.yaml", {"merchant": "에이알에스 통신", "bank": "국민은행", "holder": "홍길동",
                     "account_tail": "7890", "debit_day": "25", "amount": "12000"}, "1",
     {"agreed": True}),
])
async def test_baresip_answers_presses_keys_and_the_scenario_succeeds(
        scenario: str, params: dict[str, str], keys: str, expected: dict[str, object],
        real_media: MediaLibrary, tmp_path: Path) -> None:
    loaded = load_scenario(ROOT / "scenarios" / scenario, prompts=real_media.catalogue)
    async with baresip(tmp_path) as (sip_port, ctrl_port, rec), \
            EmbeddedBackend(SipSettings(answer_timeout=10), tmp_path / "engine") as backend:
        attempt = await backend.dial(f"sip:qa@127.0.0.1:{sip_port}")
        assert attempt.channel is not None, attempt.reason
        channel = attempt.channel

        async def person() -> None:
            async with asyncio.timeout(10):
                await channel.media.first_packet.wait()  # baresip's media is flowing
            await press(ctrl_port, keys)

        typing = asyncio.create_task(person())
        result = await Interpreter(loaded, real_media).run(channel, params)
        await channel.close()
        await typing
    assert result.outcome == "success", result.describe()
    assert all(result.result.get(k) == v for k, v in expected.items())
    decoded = sorted(rec.glob("*-dec.wav"))
    assert decoded, "baresip recorded what it heard"
    with wave.open(str(decoded[-1])) as w:
        heard = w.readframes(w.getnframes())
        rate, seconds = w.getframerate(), w.getnframes() / w.getframerate()
    assert rate == 8000 and seconds >= result.duration_ms / 1000 - 2
    assert rms_dbfs(heard) > -40, "the engine's prompts reached baresip"
