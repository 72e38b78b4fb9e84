"""The Asterisk backend's :class:`~ars_engine.telephony.channel.Channel`: an answered call driven
over its FastAGI connection, one command at a time.

How each Channel operation maps onto AGI (res_agi.c behaviour, tests/transcripts/asterisk/):

* ``play``: the prompt's PCM becomes a ``.sln`` file (:mod:`.sounds`: static prompts cached by
  content hash, anything built from call parameters in a random-named file deleted with the
  call) played with ``STREAM FILE <absolute path without extension>``. Every key is an escape
  digit: Asterisk drops keys pressed during a play that does not listen for them, or while no
  command runs, so this is the only way to keep them. With barge-in the play ends there; without
  it the key is buffered and the play resumes at ``endpos``. ``played_ms`` is the sum of the
  segments' ``endpos - offset`` in samples / 8.
* ``collect``: the buffered keys first, then a ``WAIT FOR DIGIT`` loop driven by
  :class:`~ars_engine.telephony.channel.KeyCollector` (GET DATA has a single timeout and always
  ends on ``#``, so it cannot honour a CollectSpec).
* ``start_recording``/``stop_recording``: ``EXEC MixMonitor <recordings_dir>/<name>.wav`` and
  ``EXEC StopMixMonitor``: both directions mixed, written by Asterisk (which must see
  ``recordings_dir`` at the same path).
* ``hangup``: ``HANGUP``.

Every reply has a deadline (the core has no clock): the audio still to play or the time to wait
for a key, plus ``reply_margin``; other commands get ``command_timeout``. A deadline that passes
closes the connection (nothing else can stop a running command) and raises ChannelError.

Hang-ups: Asterisk pushes ``HANGUP`` when the channel dies; afterwards media commands answer 511
(AgiDeadChannel, a CalleeHangup). ``result=-1`` to STREAM FILE or WAIT FOR DIGIT means a hang-up
or a failure such as a missing file; a ``NOOP`` tells which (Asterisk pushes ``HANGUP`` before
it reads the next command once the channel is dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ...errors import AgiCommandFailed, CalleeHangup, ChannelError
from ...media.clip import SAMPLE_RATE, PromptAudio
from ..channel import (
    Channel,
    CollectResult,
    CollectSpec,
    KeyCollector,
    PlayResult,
    RecordingInfo,
)
from .commands import DTMF_KEYS, AgiCommand, Exec, Hangup, Noop, StreamFile, WaitForDigit
from .events import AgiReply
from .replies import check, pressed_key
from .server import AgiConnection
from .sounds import CallSounds, SoundFiles

__all__ = ["AgiChannel", "AgiTimings"]

log = logging.getLogger("ars_engine.agi.channel")

SAMPLES_PER_MS = SAMPLE_RATE // 1000
# MixMonitor splits its argument at commas and Asterisk substitutes ${…} in EXEC arguments, so
# a recording path keeps to plain characters.
_RECORDING_PATH = re.compile(r"[A-Za-z0-9_./+-]+")
_RECORDING_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class AgiTimings:
    """Deadlines for Asterisk's replies, in seconds."""

    reply_margin: float = 5.0  # beyond a play's remaining audio or a key wait's timeout
    command_timeout: float = 10.0  # for a command that waits for nothing (NOOP, HANGUP, EXEC)


class AgiChannel(Channel):
    """An answered call over its FastAGI connection. Use ``async with AgiChannel(...)``, or
    call :meth:`close` when the call is over: it deletes the call's prompt files and closes the
    connection."""

    def __init__(self, connection: AgiConnection, sounds: SoundFiles, *,
                 recordings_dir: Path | None = None, call_id: str | None = None,
                 timings: AgiTimings | None = None, answered_at: float | None = None) -> None:
        self.connection = connection
        self.call_id = call_id or connection.call_id or connection.environment.uniqueid
        self.timings = timings or AgiTimings()
        self.recordings_dir = recordings_dir
        self._sounds = CallSounds(sounds)
        self._loop = asyncio.get_running_loop()
        self._answered_at = self._loop.time() if answered_at is None else answered_at
        self._keys: deque[tuple[str, int]] = deque()  # (key, ms since answer)
        self._callee_gone = False  # a command showed the callee hung up
        self._engine_hung_up = False
        self._recording: tuple[Path, float] | None = None  # (file, start time)

    async def __aenter__(self) -> AgiChannel:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def prompt_files(self) -> list[Path]:
        """The per-call prompt files written so far (deleted by :meth:`close`)."""
        return self._sounds.paths

    # -- Channel ------------------------------------------------------------------------------
    def now(self) -> float:
        return self._loop.time() - self._answered_at

    @property
    def is_up(self) -> bool:
        return not (self._callee_gone or self._engine_hung_up
                    or self.connection.hung_up.is_set() or not self.connection.usable)

    async def play(self, prompt: PromptAudio, *, barge_in: bool = False) -> PlayResult:
        self._check_up()
        if barge_in and self._keys:
            return PlayResult(0, interrupted=True)  # a key typed ahead ends it at once
        if prompt.duration_ms <= 0:
            return PlayResult(0)
        base = str(await self._sounds.publish(prompt))
        total = prompt.duration_ms * SAMPLES_PER_MS
        offset = played = 0
        while True:
            command = StreamFile(base, DTMF_KEYS, offset or None)
            reply = await self._run(command, (total - offset) / SAMPLE_RATE)
            key = pressed_key(reply)
            endpos = reply.endpos
            endpos = min(total if endpos is None else endpos, total)
            played += max(endpos - offset, 0)
            if key is None:
                return PlayResult(played // SAMPLES_PER_MS)
            self._keys.append((key, self._now_ms()))
            if barge_in:
                return PlayResult(played // SAMPLES_PER_MS, interrupted=True)
            if endpos >= total:
                return PlayResult(played // SAMPLES_PER_MS)
            offset = max(endpos, offset)  # resume where the key stopped it

    async def collect(self, spec: CollectSpec) -> CollectResult:
        self._check_up()
        loop = self._loop
        collector = KeyCollector(spec, loop.time())
        while self._keys:
            typed, t_ms = self._keys.popleft()
            done = collector.key(typed, loop.time(), t_ms)
            if done is not None:
                return done
        while True:
            deadline, end = collector.deadline()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return collector.result(end)
            reply = await self._run(WaitForDigit(math.ceil(remaining * 1000)), remaining)
            key = pressed_key(reply)
            if key is None:  # Asterisk's wait ran out: so did ours
                return collector.result(end)
            done = collector.key(key, loop.time(), self._now_ms())
            if done is not None:
                return done

    def flush_digits(self) -> None:
        self._keys.clear()

    async def start_recording(self, name: str) -> None:
        self._check_up()
        if self.recordings_dir is None:
            raise ChannelError("recording needs a recordings folder (recordings_dir)")
        path = self.recordings_dir.resolve() / f"{name}.wav"
        if not _RECORDING_NAME.fullmatch(name) or not _RECORDING_PATH.fullmatch(str(path)):
            raise ChannelError("a recording path may hold only A-Z a-z 0-9 _ . / + -")
        if self._recording is not None:
            await self.stop_recording()
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await self._run(Exec("MixMonitor", str(path)), None)
        self._recording = (path, self.now())

    async def stop_recording(self) -> RecordingInfo | None:
        if self._recording is None:
            return None
        (path, started), self._recording = self._recording, None
        if self.connection.usable:  # EXEC runs on a dead channel too; MixMonitor ends there
            with contextlib.suppress(CalleeHangup):
                await self._run(Exec("StopMixMonitor"), None)
        return RecordingInfo(path, int((self.now() - started) * 1000))

    async def hangup(self) -> None:
        if self._engine_hung_up:
            return
        up = self.is_up
        self._engine_hung_up = True
        if up:
            with contextlib.suppress(CalleeHangup):  # it was already down (511)
                await self._run(Hangup(), None)

    async def close(self) -> None:
        """Delete the call's per-call prompt files and close the connection (idempotent)."""
        try:
            await self._sounds.close()
        finally:
            await self.connection.close()

    # -- internals ----------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.now() * 1000)

    def _check_up(self) -> None:
        if self.is_up:
            return
        if not self.connection.usable and not (self._callee_gone or self._engine_hung_up
                                               or self.connection.hung_up.is_set()):
            raise ChannelError("the AGI connection is closed")
        raise CalleeHangup("the call is no longer up")

    async def _run(self, command: AgiCommand, waits: float | None) -> AgiReply:
        """Send ``command`` and return its successful reply. ``waits``: seconds the command
        may legitimately take (audio, key timeout), None for an immediate command.

        Raises CalleeHangup when the call is down (511, ``(hangup)``, or ``-1`` that a NOOP
        shows to be a hang-up), other AgiErrors for real failures, ChannelError when the
        connection fails or misses its deadline."""
        t = self.timings
        timeout = t.command_timeout if waits is None else waits + t.reply_margin
        try:
            reply = await self.connection.command(command, timeout=timeout)
            try:
                return check(reply)
            except AgiCommandFailed as exc:
                if exc.may_be_hangup and await self._hung_up_after(command):
                    raise CalleeHangup(f"the callee hung up during {command.name}") from exc
                raise
        except CalleeHangup:
            self._callee_gone = True
            raise

    async def _hung_up_after(self, command: AgiCommand) -> bool:
        """After ``result=-1``: was it a hang-up? Asterisk pushes ``HANGUP`` before it answers
        the next command when the channel is dead (res_agi.c run_agi)."""
        if self.connection.hung_up.is_set():
            return True
        reply = await self.connection.command(Noop(), timeout=self.timings.command_timeout)
        if reply.after_hangup or self.connection.hung_up.is_set():
            return True
        log.warning("call %s: %s failed (result -1) with the channel up", self.call_id,
                    command.name)
        return False
