"""The FastAGI server and the AGI Channel over a real loopback TCP connection.

A scripted fake Asterisk (:class:`FakeAsterisk`) plays the Asterisk side: it connects to the
server, sends the environment block recorded from Asterisk 22
(tests/transcripts/asterisk/agi_local_callee_hangup.rx.bin) with the test's ``call_id``, reads
each command line and answers what the test says, in Asterisk's words (same transcripts).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from ars_engine.errors import (
    AgiCommandFailed,
    AgiDeadChannel,
    CalleeHangup,
    ChannelError,
)
from ars_engine.media.clip import Clip, PromptAudio
from ars_engine.telephony.agi.channel import AgiChannel, AgiTimings
from ars_engine.telephony.agi.commands import Noop
from ars_engine.telephony.agi.server import AgiConnection, FastAgiServer
from ars_engine.telephony.agi.sounds import SoundFiles, is_static_prompt
from ars_engine.telephony.channel import CollectEnd, CollectSpec

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "asterisk"
_RX = (TRANSCRIPTS / "agi_local_callee_hangup.rx.bin").read_bytes()
ENVIRONMENT = _RX[: _RX.index(b"\n\n") + 2]  # Asterisk 22's agi_* block, 22 lines

STEP = 5.0  # seconds any single expected event may take before the test fails
SHORT_MARGIN = 0.2  # reply margin for tests where the fake never answers
SHORT_ENVIRONMENT = 0.2  # environment timeout for the silent-peer test
FAST = AgiTimings(reply_margin=2.0, command_timeout=2.0)
ALL_KEYS = b'"0123456789*#ABCD"'
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
T = TypeVar("T")


def environment(call_id: str | None) -> bytes:
    request = "agi://127.0.0.1:4573/scenario" + (f"?call_id={call_id}" if call_id else "")
    return re.sub(rb"agi_request: [^\n]*", f"agi_request: {request}".encode(), ENVIRONMENT)


class FakeAsterisk:
    """Asterisk's side of one FastAGI connection, driven step by step by a test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, call_id: str | None = "c1", *,
                      env: bytes | None = None) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        # Asterisk sends the block in more than one read (README); so do we.
        block = environment(call_id) if env is None else env
        peer.send(block[:100])
        peer.send(block[100:])
        return peer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def command(self) -> bytes:
        """The next command line the engine wrote."""
        async with asyncio.timeout(STEP):
            line = await self.reader.readline()
        assert line.endswith(b"\n"), f"connection ended instead of a command: {line!r}"
        return line

    async def answer(self, prefix: bytes, reply: bytes) -> bytes:
        """Read a command that starts with ``prefix`` and answer ``reply``."""
        line = await self.command()
        assert line.startswith(prefix), line
        self.send(reply)
        return line

    async def closed(self) -> None:
        """Wait until the engine closed the connection (fails on anything else)."""
        async with asyncio.timeout(STEP):
            rest = await self.reader.read()
        assert rest == b"", rest

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@asynccontextmanager
async def call(tmp_path: Path, *, timings: AgiTimings = FAST,
               call_id: str = "c1") -> AsyncIterator[tuple[AgiChannel, FakeAsterisk]]:
    """A server, an expected call, the fake Asterisk connected, and the channel on it."""
    async with FastAgiServer(port=0) as server, server.expect(call_id) as expected:
        peer = await FakeAsterisk.connect(server.port, call_id)
        conn = await expected.connection(timeout=STEP)
        try:
            async with AgiChannel(conn, SoundFiles(tmp_path / "sounds"),
                                  recordings_dir=tmp_path / "rec", timings=timings) as channel:
                yield channel, peer
        finally:
            await peer.close()


async def finish(task: Awaitable[T]) -> T:
    async with asyncio.timeout(STEP):
        return await task


def start(coro: Awaitable[T]) -> asyncio.Task[T]:
    return asyncio.ensure_future(coro)


def tone(ms: int, level: int = 1000) -> bytes:
    return level.to_bytes(2, "little", signed=True) * (8 * ms)


def static_prompt(ms: int = 2000) -> PromptAudio:
    return PromptAudio("안내", (Clip.from_pcm(tone(ms)),), ("intro",))


def digits_prompt(ms: int = 2000) -> PromptAudio:
    """Like a type A code read from digit clips: no catalogue id for the digits."""
    return PromptAudio("인증번호는 ****** 입니다", (Clip.from_pcm(tone(ms // 2)),
                                                   Clip.from_pcm(tone(ms // 2, 2000))),
                       ("code_is",))


def stream_file_path(line: bytes) -> Path:
    match = re.fullmatch(rb'STREAM FILE (\S+) "[^"]*"( \d+)?\n', line)
    assert match, line
    return Path(match[1].decode())


# -- play -------------------------------------------------------------------------------------
async def test_play_streams_static_prompt_by_absolute_path_without_extension(tmp_path):
    prompt = static_prompt(2000)
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(prompt))
        line = await peer.answer(b"STREAM FILE ", b"200 result=0 endpos=16000\n")
        result = await finish(play)
    path = stream_file_path(line)
    assert path.is_absolute() and path.suffix == "" and path.parent.name == "static"
    assert line.rstrip(b"\n").endswith(ALL_KEYS)  # keys are kept even without barge-in
    assert path.with_suffix(".sln").read_bytes() == prompt.pcm()  # static: kept after the call
    assert (result.played_ms, result.interrupted) == (2000, False)


async def test_barge_in_play_stops_at_key_and_collect_gets_it(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(static_prompt(2000), barge_in=True))
        await peer.answer(b"STREAM FILE ", b"200 result=49 endpos=9760\n")
        result = await finish(play)
        got = await finish(channel.collect(CollectSpec(max_digits=1)))
        hangup = start(channel.hangup())
        # nothing was sent for the collect: the next command is the HANGUP
        await peer.answer(b"HANGUP\n", b"200 result=1\n")
        await finish(hangup)
    assert (result.played_ms, result.interrupted) == (1220, True)
    assert (got.digits, got.end) == ("1", CollectEnd.MAX_DIGITS)


async def test_play_without_barge_in_buffers_key_and_resumes_at_endpos(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(static_prompt(2000)))
        first = await peer.answer(b"STREAM FILE ", b"200 result=53 endpos=4000\n")
        second = await peer.answer(b"STREAM FILE ", b"200 result=0 endpos=16000\n")
        result = await finish(play)
        got = await finish(channel.collect(CollectSpec(max_digits=1)))
    assert not first.rstrip(b"\n").endswith(b" 4000")
    assert second == first.rstrip(b"\n") + b" 4000\n"  # same file, from sample 4000
    assert (result.played_ms, result.interrupted) == (2000, False)
    assert got.digits == "5"


async def test_barge_in_play_with_a_key_typed_ahead_ends_at_once(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(static_prompt(2000)))
        await peer.answer(b"STREAM FILE ", b"200 result=55 endpos=16000\n")
        await finish(play)
        result = await finish(channel.play(static_prompt(1000), barge_in=True))
        got = await finish(channel.collect(CollectSpec(max_digits=1)))
    assert (result.played_ms, result.interrupted) == (0, True)
    assert got.digits == "7"


# -- collect ----------------------------------------------------------------------------------
def wait_ms(line: bytes) -> int:
    match = re.fullmatch(rb"WAIT FOR DIGIT (\d+)\n", line)
    assert match, line
    return int(match[1])


async def test_collect_ends_on_finish_key_through_wait_for_digit(tmp_path):
    spec = CollectSpec(max_digits=6, finish_key="#", first_digit_timeout=8,
                       inter_digit_timeout=4)
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(spec))
        first = await peer.answer(b"WAIT FOR DIGIT ", b"200 result=49\n")
        second = await peer.answer(b"WAIT FOR DIGIT ", b"200 result=50\n")
        await peer.answer(b"WAIT FOR DIGIT ", b"200 result=35\n")
        got = await finish(collect)
    assert 7000 < wait_ms(first) <= 8000
    assert 3000 < wait_ms(second) <= 4000  # the inter-digit timeout after a key
    assert (got.digits, got.end) == ("12", CollectEnd.FINISH_KEY)
    assert len(got.key_times_ms) == 3 and got.key_times_ms == tuple(sorted(got.key_times_ms))


async def test_collect_first_digit_timeout_when_asterisk_wait_runs_out(tmp_path):
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(CollectSpec(max_digits=4, first_digit_timeout=3)))
        await peer.answer(b"WAIT FOR DIGIT ", b"200 result=0\n")
        got = await finish(collect)
    assert (got.digits, got.end) == ("", CollectEnd.FIRST_DIGIT_TIMEOUT)


async def test_collect_inter_digit_timeout_keeps_partial_digits(tmp_path):
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(CollectSpec(max_digits=4, inter_digit_timeout=2)))
        await peer.answer(b"WAIT FOR DIGIT ", b"200 result=57\n")
        await peer.answer(b"WAIT FOR DIGIT ", b"200 result=0\n")
        got = await finish(collect)
    assert (got.digits, got.end) == ("9", CollectEnd.INTER_DIGIT_TIMEOUT)


async def test_collect_total_timeout_bounds_every_wait(tmp_path):
    spec = CollectSpec(max_digits=6, first_digit_timeout=10, inter_digit_timeout=10,
                       total_timeout=3)
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(spec))
        first = await peer.answer(b"WAIT FOR DIGIT ", b"200 result=49\n")
        second = await peer.answer(b"WAIT FOR DIGIT ", b"200 result=0\n")
        got = await finish(collect)
    assert wait_ms(first) <= 3000 and wait_ms(second) <= wait_ms(first)  # not 10 s
    assert (got.digits, got.end) == ("1", CollectEnd.TOTAL_TIMEOUT)


async def test_flush_digits_drops_buffered_keys(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(static_prompt(1000)))
        await peer.answer(b"STREAM FILE ", b"200 result=51 endpos=8000\n")
        await finish(play)
        channel.flush_digits()
        collect = start(channel.collect(CollectSpec(max_digits=1, first_digit_timeout=1)))
        await peer.answer(b"WAIT FOR DIGIT ", b"200 result=0\n")
        got = await finish(collect)
    assert got.digits == ""


# -- hang-ups and failures --------------------------------------------------------------------
async def test_async_hangup_between_command_and_reply_is_callee_hangup(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(static_prompt(2000)))
        await peer.answer(b"STREAM FILE ", b"HANGUP\n200 result=-1 endpos=3200\n")
        with pytest.raises(CalleeHangup):
            await finish(play)
        assert not channel.is_up
        with pytest.raises(CalleeHangup):  # raised at once, nothing sent
            await finish(channel.collect(CollectSpec(max_digits=1)))
        await finish(channel.hangup())  # idempotent, quiet: the call is down already


async def test_511_on_a_dead_channel_is_callee_hangup(tmp_path):
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(CollectSpec(max_digits=1)))
        await peer.answer(b"WAIT FOR DIGIT ", DEAD)
        with pytest.raises(AgiDeadChannel):
            await finish(collect)
        assert not channel.is_up


async def test_minus_one_then_hangup_before_noop_reply_is_callee_hangup(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(digits_prompt()))
        await peer.answer(b"STREAM FILE ", b"200 result=-1 endpos=0\n")
        await peer.answer(b"NOOP\n", b"HANGUP\n200 result=0\n")
        with pytest.raises(CalleeHangup):
            await finish(play)


async def test_minus_one_with_the_channel_up_is_a_command_failure(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(digits_prompt()))
        await peer.answer(b"STREAM FILE ", b"200 result=-1 endpos=0\n")  # e.g. missing file
        await peer.answer(b"NOOP\n", b"200 result=0\n")
        with pytest.raises(AgiCommandFailed) as failure:
            await finish(play)
        assert not isinstance(failure.value, CalleeHangup)
        assert channel.is_up


async def test_peer_that_never_replies_times_out_as_channel_error(tmp_path):
    timings = AgiTimings(reply_margin=SHORT_MARGIN, command_timeout=SHORT_MARGIN)
    async with call(tmp_path, timings=timings) as (channel, peer):
        play = start(channel.play(static_prompt(50)))
        await peer.command()  # read and never answer
        with pytest.raises(ChannelError) as failure:
            await finish(play)
        assert not isinstance(failure.value, CalleeHangup)
        await peer.closed()  # the only way to stop a running command
        with pytest.raises(ChannelError):
            await finish(channel.play(static_prompt(50)))


async def test_connection_closed_by_asterisk_mid_command_is_channel_error(tmp_path):
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(CollectSpec(max_digits=1)))
        await peer.command()
        peer.writer.close()
        with pytest.raises(ChannelError) as failure:
            await finish(collect)
        assert not isinstance(failure.value, CalleeHangup)


async def test_hangup_sends_hangup_once(tmp_path):
    async with call(tmp_path) as (channel, peer):
        hangup = start(channel.hangup())
        await peer.answer(b"HANGUP\n", b"200 result=1\nHANGUP\n")
        await finish(hangup)
        await finish(channel.hangup())
        assert not channel.is_up
        with pytest.raises(CalleeHangup):
            await finish(channel.play(static_prompt()))
    await peer.closed()  # nothing more was sent; the channel's close closed it


async def test_cancelled_command_closes_the_connection(tmp_path):
    async with call(tmp_path) as (channel, peer):
        play = start(channel.play(static_prompt(2000)))
        await peer.command()
        play.cancel()
        with pytest.raises(asyncio.CancelledError):
            await finish(play)
        await peer.closed()
        assert not channel.is_up


# -- recording --------------------------------------------------------------------------------
async def test_recording_runs_mixmonitor_into_the_recordings_folder(tmp_path):
    async with call(tmp_path) as (channel, peer):
        begin = start(channel.start_recording("c1-consent"))
        started = await peer.answer(b"EXEC MixMonitor ", b"200 result=0\n")
        await finish(begin)
        stop = start(channel.stop_recording())
        await peer.answer(b"EXEC StopMixMonitor\n", b"200 result=0\n")
        info = await finish(stop)
        assert await channel.stop_recording() is None
    assert info is not None
    expected = (tmp_path / "rec").resolve() / "c1-consent.wav"
    assert started == f"EXEC MixMonitor {expected}\n".encode()
    assert info.path == expected and info.duration_ms >= 0


async def test_recording_name_with_dialplan_syntax_is_refused(tmp_path):
    async with call(tmp_path) as (channel, _peer):
        with pytest.raises(ChannelError):
            await channel.start_recording("x,${SHELL(id)}")


# -- prompt files and secrets -----------------------------------------------------------------
async def test_per_call_prompt_files_are_random_named_and_deleted_at_the_end(tmp_path):
    prompt = digits_prompt()
    assert not is_static_prompt(prompt)
    lines = []
    for call_id in ("c1", "c2"):
        async with call(tmp_path, call_id=call_id) as (channel, peer):
            for _ in range(2):
                play = start(channel.play(prompt))
                lines.append(await peer.answer(b"STREAM FILE ", b"200 result=0 endpos=16000\n"))
                await finish(play)
            files = channel.prompt_files
            assert [p.read_bytes() for p in files] == [prompt.pcm()]
        assert not any(p.exists() for p in files)
    paths = [stream_file_path(line) for line in lines]
    assert paths[0] == paths[1] and paths[1] != paths[2]  # reused within a call only
    for path in paths:
        assert path.parent.name == "calls" and re.fullmatch(r"[0-9a-f]{32}", path.name)
        assert Clip.from_pcm(prompt.pcm()).key not in path.name
    assert (tmp_path / "sounds" / "calls").stat().st_mode & 0o777 == 0o711


async def test_gathered_pin_never_reaches_the_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    pin = "4827"
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(CollectSpec(max_digits=4)))
        for key in pin:
            await peer.answer(b"WAIT FOR DIGIT ", f"200 result={ord(key)}\n".encode())
        got = await finish(collect)
        play = start(channel.play(static_prompt(1000)))
        await peer.answer(b"STREAM FILE ", b"200 result=52 endpos=100\n")  # key during a play
        await peer.answer(b"STREAM FILE ", b"200 result=0 endpos=8000\n")
        await finish(play)
    assert got.digits == pin
    assert caplog.records, "the AGI exchange is logged at DEBUG"
    text = caplog.text + repr(got)
    assert pin not in text
    for key in set(pin):
        assert f"result={ord(key)}" not in text


@pytest.mark.parametrize(("clips", "ids", "static"), [
    (1, ("intro",), True),  # one catalogue prompt
    (2, ("intro", "goodbye"), True),  # catalogue prompts only
    (3, ("code_is", "suffix_imnida"), False),  # digits between two catalogue prompts
    (1, (), False),  # inline text, a file, a silence or digits alone
    (0, (), False),
])
def test_only_prompts_made_of_catalogue_prompts_are_static(clips, ids, static):
    prompt = PromptAudio("t", tuple(Clip.from_pcm(tone(10 * (i + 1))) for i in range(clips)), ids)
    assert is_static_prompt(prompt) is static


def test_sweep_removes_only_stale_per_call_files(tmp_path):
    files = SoundFiles(tmp_path / "sounds")
    old = files.per_call(tone(10)).with_suffix(".sln")
    new = files.per_call(tone(20)).with_suffix(".sln")
    static = files.static(tone(30)).with_suffix(".sln")
    stale = old.stat().st_mtime - 7200
    os.utime(old, (stale, stale))
    assert files.sweep(older_than=3600) == 1
    assert not old.exists() and new.exists() and static.exists()
    assert oct(static.stat().st_mode & 0o777) == oct(0o644)


# -- the server -------------------------------------------------------------------------------
async def test_unknown_call_id_is_hung_up_and_closed(caplog):
    caplog.set_level(logging.INFO)
    async with FastAgiServer(port=0) as server:
        peer = await FakeAsterisk.connect(server.port, "nobody-expects-me")
        await peer.answer(b"HANGUP\n", b"200 result=1\nHANGUP\n")
        await peer.closed()
        await peer.close()
    assert "no call awaits call_id 'nobody-expects-me'" in caplog.text


async def test_a_call_is_routed_by_its_uniqueid_when_the_request_has_no_call_id():
    # AMI Originate's ChannelId sets agi_uniqueid ("ars-abc-1" in the recorded environment)
    async with FastAgiServer(port=0) as server, server.expect("ars-abc-1") as expected:
        peer = await FakeAsterisk.connect(server.port, None)
        conn = await expected.connection(timeout=STEP)
        assert conn.environment.uniqueid == "ars-abc-1" and conn.call_id is None
    await peer.closed()
    await peer.close()


async def test_a_late_second_connection_for_a_call_is_refused(tmp_path):
    async with FastAgiServer(port=0) as server, server.expect("c1") as expected:
        first = await FakeAsterisk.connect(server.port, "c1")
        conn = await expected.connection(timeout=STEP)
        second = await FakeAsterisk.connect(server.port, "c1")
        await second.answer(b"HANGUP\n", b"200 result=1\n")
        await second.closed()
        assert conn.usable
    await first.closed()  # leaving expect() closed the call's connection
    await first.close()
    await second.close()


async def test_default_handler_serves_requests_without_call_id():
    seen: list[AgiConnection] = []

    async def handler(conn: AgiConnection) -> None:
        seen.append(conn)
        await conn.command(Noop(), timeout=STEP)

    async with FastAgiServer(port=0, handler=handler) as server:
        peer = await FakeAsterisk.connect(server.port, None)
        await peer.answer(b"NOOP\n", b"200 result=0\n")
        await peer.closed()
        await peer.close()
    assert seen[0].environment.uniqueid == "ars-abc-1"
    assert seen[0].environment.script == "scenario"


async def test_server_survives_garbage_silent_and_crashing_peers(caplog):
    served: list[str] = []

    async def handler(conn: AgiConnection) -> None:
        if conn.environment.channel == "boom":
            raise ValueError("secret 918273")  # a bug in a handler
        served.append(conn.environment.uniqueid)

    async with FastAgiServer(port=0, handler=handler,
                             environment_timeout=SHORT_ENVIRONMENT) as server:
        garbage = await FakeAsterisk.connect(server.port, env=b"GET / HTTP/1.0\n\n")
        await garbage.closed()
        silent = await FakeAsterisk.connect(server.port, env=b"agi_network: yes\n")
        await silent.closed()
        boom = await FakeAsterisk.connect(
            server.port, env=ENVIRONMENT.replace(b"Local/s@callee-00000005;1", b"boom"))
        await boom.closed()
        good = await FakeAsterisk.connect(server.port, None)
        await good.closed()
        for peer in (garbage, silent, boom, good):
            await peer.close()
    assert served == ["ars-abc-1"]
    assert "broke the protocol" in caplog.text
    assert "no environment within" in caplog.text
    assert "handler failed: ValueError at test_agi_channel.py:" in caplog.text
    assert "918273" not in caplog.text


async def test_protocol_error_mid_call_fails_the_command_and_closes(tmp_path):
    async with call(tmp_path) as (channel, peer):
        collect = start(channel.collect(CollectSpec(max_digits=1)))
        await peer.answer(b"WAIT FOR DIGIT ", b"this is not agi\n")
        with pytest.raises(ChannelError):
            await finish(collect)
        await peer.closed()


async def test_only_allowed_hosts_may_connect():
    async with FastAgiServer(port=0, allowed_hosts={"192.0.2.1"}) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        peer = FakeAsterisk(reader, writer)  # refused before it could send its environment
        await peer.closed()
        await peer.close()
        assert server.connections == 0


async def test_closing_the_server_ends_a_handler_blocked_on_a_command():
    errors: list[BaseException] = []
    waiting = asyncio.Event()

    async def handler(conn: AgiConnection) -> None:
        waiting.set()
        try:
            await conn.command(Noop(), timeout=60)
        except BaseException as exc:
            errors.append(exc)
            raise

    server = FastAgiServer(port=0, handler=handler)
    async with server:
        peer = await FakeAsterisk.connect(server.port, None)
        await peer.command()
        await finish(waiting.wait())
    assert server.connections == 0
    assert errors and isinstance(errors[0], asyncio.CancelledError | ChannelError)
    await peer.closed()
    await peer.close()


async def test_expected_call_times_out_when_asterisk_never_connects():
    async with FastAgiServer(port=0) as server, server.expect("c9") as expected:
        with pytest.raises(TimeoutError):
            await expected.connection(timeout=SHORT_ENVIRONMENT)
        assert not expected.arrived
        with pytest.raises(ValueError):
            async with server.expect("c9"):
                pass

