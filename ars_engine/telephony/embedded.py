"""The embedded SIP backend: real calls with no PBX (SIP UAC + RTP, on asyncio).

:class:`EmbeddedBackend` places a call (INVITE with an SDP offer), and once it is answered hands an
:class:`EmbeddedChannel` (the :class:`~ars_engine.telephony.channel.Channel` of this backend) to
whoever runs the scenario. It knows nothing about scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CalleeHangup, ProtocolError
from ..media.clip import BYTES_PER_MS, PromptAudio
from .channel import (
    Channel,
    CollectResult,
    CollectSpec,
    KeyCollector,
    PlayResult,
    RecordingInfo,
)
from .outcomes import CallAttempt, Outcome
from .rtp.media import MediaSession
from .simulated import write_stereo_recording
from .sip.call import CallAnswered, CallConfig, CallEnded, OutboundCall
from .sip.keepalive import TrunkMonitor
from .sip.sdp import SessionDescription, make_offer, negotiate_answer
from .sip.session_update import SessionUpdater
from .sip.transport import OutboundCallDriver, SipEndpoint, TrunkMonitorDriver

log = logging.getLogger("ars_engine.embedded")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SipSettings:
    """Where the engine's SIP and RTP live and how it reaches the trunk."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    media_host: str | None = None
    proxy: tuple[str, int] | None = None  # registrar-less outbound proxy (trunk)
    username: str | None = None
    password: str | None = None
    from_user: str = "ars"
    answer_timeout: float = 30.0
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    t1: float = 0.5  # RFC 3261 T1; tests shorten it so Timer B (64·T1) does not take 32 s
    keepalive: float = 30.0  # seconds between OPTIONS to the proxy (0: none; no proxy: none)

    def __repr__(self) -> str:
        return f"SipSettings({self.host}:{self.port}, proxy={self.proxy})"


class EmbeddedBackend:
    """Places calls from one SIP socket. Use ``async with EmbeddedBackend(settings) as b``."""

    def __init__(self, settings: SipSettings, recordings_dir: Path | None = None) -> None:
        self.settings = settings
        self.recordings_dir = recordings_dir
        self.endpoint: SipEndpoint | None = None
        self.trunk: TrunkMonitorDriver | None = None  # OPTIONS keepalive when a proxy is set

    async def __aenter__(self) -> EmbeddedBackend:
        s = self.settings
        self.endpoint = await SipEndpoint.open(s.host, s.port)
        if s.proxy and s.keepalive > 0:
            monitor = TrunkMonitor(s.proxy, *self.endpoint.local, interval=s.keepalive, t1=s.t1,
                                   user=s.from_user)
            self.trunk = TrunkMonitorDriver(self.endpoint, monitor)
            self.trunk.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.trunk is not None:
            await self.trunk.close()
            self.trunk = None
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    async def dial(self, target: str, *, call_id: str | None = None,
                   on_progress: Callable[[int], None] | None = None) -> CallAttempt:
        """Call ``target`` (a sip: URI); return when it is answered or has failed.
        ``on_progress`` gets each provisional status (180 Ringing…). Cancelling the task that
        awaits this sends CANCEL (RFC 3261 §9.1) and waits, bounded by the SIP timers, for the
        call to end before the cancellation goes on."""
        assert self.endpoint is not None, "use the backend as an async context manager"
        s = self.settings
        media_host = s.media_host or s.host
        media = await MediaSession.open(media_host)
        offer = make_offer(media_host, media.port, secrets.randbits(31), 1, codecs=s.codecs)
        local_host, local_port = self.endpoint.local
        core = OutboundCall(CallConfig(
            target=target, local_host=local_host, local_port=local_port, from_user=s.from_user,
            proxy=s.proxy, username=s.username, password=s.password,
            answer_timeout=s.answer_timeout, t1=s.t1), str(offer).encode(), call_id=call_id)
        driver = OutboundCallDriver(self.endpoint, core)
        driver.on_progress = on_progress
        driver.start()
        try:
            first = await asyncio.shield(driver.answered)
        except asyncio.CancelledError:
            await asyncio.shield(self._abandon(driver, media))
            raise
        progress = [p.status for p in driver.progress]
        if isinstance(first, CallEnded):
            await driver.close()
            await media.close()
            return CallAttempt(first.outcome, first.status, first.reason, progress=progress)
        assert isinstance(first, CallAnswered)
        try:
            negotiated = negotiate_answer(offer, SessionDescription.parse(first.sdp))
        except ProtocolError as exc:
            log.warning("call %s: unusable SDP answer: %s", core.call_id, exc)
            await driver.hangup()
            await driver.close()
            await media.close()
            return CallAttempt(Outcome.FAILED, core.status, f"bad SDP answer: {exc}",
                               progress=progress)
        media.configure(negotiated)
        media.start()
        driver.session_update = SessionUpdater(offer, negotiated, media.retarget)
        channel = EmbeddedChannel(core.call_id, driver, media, self.recordings_dir)
        return CallAttempt(Outcome.ANSWERED, core.status, "answered", channel, progress)


    @staticmethod
    async def _abandon(driver: OutboundCallDriver, media: MediaSession) -> None:
        """A dial cancelled by its caller: CANCEL (or BYE if the 200 crossed it), then free
        the socket and the media port."""
        try:
            await driver.hangup()
        except Exception:
            log.warning("call %s: hang-up of a cancelled dial failed", driver.core.call_id,
                        exc_info=True)
        finally:
            await driver.close()
            await media.close()


class EmbeddedChannel(Channel):
    """An answered SIP call as the interpreter sees it."""

    def __init__(self, call_id: str, driver: OutboundCallDriver, media: MediaSession,
                 recordings_dir: Path | None) -> None:
        self.call_id = call_id
        self.driver = driver
        self.media = media
        self.loop = asyncio.get_running_loop()
        self.answered_at = self.loop.time()
        self.recordings_dir = recordings_dir
        self._recording: str | None = None
        self.ended: CallEnded | None = None

    def now(self) -> float:
        return self.loop.time() - self.answered_at

    @property
    def is_up(self) -> bool:
        return not self.driver.ended.done()

    async def _until_hangup(self, work: Awaitable[T]) -> T:
        """Run ``work``; if the call ends first, stop it and raise CalleeHangup."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        ended: asyncio.Future[Any] = self.driver.ended
        try:
            done, _ = await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.media.stop_playing()
        raise CalleeHangup("the callee hung up")

    async def play(self, prompt: PromptAudio, *, barge_in: bool = False) -> PlayResult:
        if not self.is_up:
            raise CalleeHangup("the call is no longer up")
        played, interrupted = await self._until_hangup(
            self.media.play(prompt.pcm(), barge_in=barge_in))
        return PlayResult(played, interrupted)

    async def collect(self, spec: CollectSpec) -> CollectResult:
        if not self.is_up:
            raise CalleeHangup("the call is no longer up")
        return await self._until_hangup(self._collect(spec))

    async def _collect(self, spec: CollectSpec) -> CollectResult:
        collector = KeyCollector(spec, self.loop.time())
        while True:
            deadline, end = collector.deadline()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
                async with asyncio.timeout(max(deadline - self.loop.time(), 0)):
                    key, at = await self.media.keys.get()
            except TimeoutError:
                return collector.result(end)
            done = collector.key(key, self.loop.time(), int((at - self.answered_at) * 1000))
            if done is not None:
                return done

    def flush_digits(self) -> None:
        while not self.media.keys.empty():
            self.media.keys.get_nowait()

    async def start_recording(self, name: str) -> None:
        if not self.is_up:
            raise CalleeHangup("the call is no longer up")
        self._recording = name
        self.media.start_recording()

    async def stop_recording(self) -> RecordingInfo | None:
        if self._recording is None:
            return None
        name, self._recording = self._recording, None
        callee, engine = self.media.stop_recording()
        path = (self.recordings_dir or Path(".")) / f"{name}.wav"
        await asyncio.to_thread(write_stereo_recording, path, engine=engine, callee=callee)
        return RecordingInfo(path, max(len(callee), len(engine)) // BYTES_PER_MS)

    async def hangup(self) -> None:
        if self.ended is None:
            self.ended = await self.driver.hangup()
        await self.close()

    async def close(self) -> None:
        """Release the call's RTP socket and timers (after the call ended)."""
        await self.media.close()
        await self.driver.close()

