"""The RTP stream of one call: the asyncio edge around the sans-I/O RTP cores.

* One UDP socket per call. The engine sends continuously from answer to hang-up: prompt audio
  when a prompt plays, silence otherwise, one packet every ptime on absolute deadlines
  (:class:`RtpSender`), so the callee hears the first prompt within one ptime and NAT bindings
  stay open. After a stall of more than :data:`MAX_BURST` packets the schedule skips ahead instead
  of bursting.
* Symmetric RTP (RFC 4961): the stream goes where the SDP said until the peer's packets arrive,
  then to their source.
* Keys arrive as RFC 4733 telephone-events when negotiated, otherwise through the in-band
  Goertzel detector on the decoded audio. Each key is queued with its arrival time; a barge-in
  prompt stops at the first key.
* While recording, the callee's audio (placed by RTP timestamp, so a lost packet leaves silence
  rather than shifting the rest) and the engine's sent audio are kept for a stereo WAV. ("Callee"
  is the remote side: at the QA softphone it is the engine.)
* Keys can be sent (:meth:`MediaSession.send_key`, used by the QA softphone): RFC 4733 events take
  the place of audio packets in the same stream, or in-band tones replace the outgoing audio.
* Optionally (:meth:`MediaSession.detect_prompt_ends`) the received audio is watched for the end of
  the peer's prompts (:mod:`ars_engine.media.vad`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ...errors import ProtocolError
from ...media.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ...media.clip import BYTES_PER_MS
from ...media.dtmf import GoertzelDetector, tone
from ...media.vad import PromptEndDetector
from ..sip.sdp import NegotiatedMedia
from .packet import RtpPacket, ts_distance
from .rfc4733 import DtmfPacket, DtmfReceiver, DtmfSender, TelephoneEvent
from .session import RtpReceiver, RtpSender

log = logging.getLogger("ars_engine.rtp")

MAX_BURST = 5  # packets sent at once after a stall before the schedule skips ahead
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "PCMU": (ulaw_encode, ulaw_decode),
    "PCMA": (alaw_encode, alaw_decode),
}


@dataclass(slots=True)
class _Play:
    pcm: bytes
    barge_in: bool
    done: asyncio.Future[tuple[int, bool]]
    offset: int = 0


KeyMethod = Literal["rfc4733", "inband"]


@dataclass(slots=True)
class _KeyPress:
    """One key waiting to be sent or being sent: RFC 4733 ``packets`` (planned when the send
    loop reaches the press, so the event starts at the stream's current timestamp) or an
    in-band ``tone``. ``offset``: packets or tone bytes sent so far."""

    key: str
    method: KeyMethod
    duration_ms: int
    done: asyncio.Future[None]
    packets: list[DtmfPacket] | None = None
    tone: bytes = b""
    offset: int = 0


class _Pacer:
    """One task per event loop and ptime that sends every session's packet each tick.

    All sessions share one grid of absolute deadlines (``start + n · ptime``): a new session
    joins at the next tick, so 500 streams cost one wake-up per 20 ms instead of 500, and every
    stream keeps exact 20 ms spacing. Owned by the sessions: the last one to leave cancels it.
    """

    _instances: ClassVar[dict[tuple[int, float], _Pacer]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop, ptime: float) -> None:
        self.loop = loop
        self.ptime = ptime
        self.sessions: dict[int, MediaSession] = {}
        self.next_tick = loop.time()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, ptime: float) -> _Pacer:
        key = (id(loop), ptime)
        pacer = cls._instances.get(key)
        if pacer is None or pacer.loop is not loop:
            pacer = cls._instances[key] = cls(loop, ptime)
        return pacer

    def add(self, session: MediaSession) -> float:
        """Register ``session``; return the deadline of its first packet (the next tick)."""
        self.sessions[id(session)] = session
        if self.task is None:
            self.next_tick = self.loop.time()
            self.task = self.loop.create_task(self._run(), name="rtp-pacer")
        return max(self.next_tick, self.loop.time())

    async def remove(self, session: MediaSession) -> None:
        self.sessions.pop(id(session), None)
        if not self.sessions and self.task is not None:
            task, self.task = self.task, None
            self._instances.pop((id(self.loop), self.ptime), None)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            delay = self.next_tick - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.loop.time()
            for session in list(self.sessions.values()):
                try:
                    session._send_due(now)
                except Exception:  # one broken stream must not silence the others
                    log.exception("rtp send failed")
            self.next_tick += self.ptime
            if now - self.next_tick > MAX_BURST * self.ptime:
                self.next_tick = now  # the loop stalled: re-anchor the grid


class MediaSession(asyncio.DatagramProtocol):
    """RTP for one call. Create with :meth:`open`, then :meth:`configure` and :meth:`start`."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.remote: tuple[str, int] | None = None
        self.media: NegotiatedMedia | None = None
        self.keys: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        self.receiver = RtpReceiver()
        self.bad_packets = 0
        self.first_packet = asyncio.Event()  # set when the peer's first RTP packet arrives
        self._latched = False
        self._encode: Callable[[bytes], bytes] = ulaw_encode
        self._decode: Callable[[bytes], bytes] = ulaw_decode
        self._sender: RtpSender | None = None
        self._dtmf: DtmfReceiver | None = None
        self._inband: GoertzelDetector | None = None
        self._pacer: _Pacer | None = None
        self._play: _Play | None = None
        self._frame_bytes = 320
        self._recording = False
        self._rec_engine = bytearray()
        self._rec_callee = bytearray()
        self._rec_ts0: int | None = None
        self._rec_start_sample = 0
        self._sent_samples = 0
        self._presses: deque[_KeyPress] = deque()
        self._vad: PromptEndDetector | None = None
        self.prompt_ends: list[float] = []  # loop times at which the peer's prompts ended
        self._prompt_end_changed = asyncio.Event()

    @classmethod
    async def open(cls, host: str, port: int = 0) -> MediaSession:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(cls, local_addr=(host, port))
        protocol.transport = transport
        protocol.local = transport.get_extra_info("sockname")[:2]
        return protocol

    @property
    def port(self) -> int:
        return self.local[1]

    def configure(self, media: NegotiatedMedia) -> None:
        """Apply the negotiated stream (codec, payload types, remote address)."""
        if media.codec not in CODECS:
            raise ValueError(f"codec {media.codec} is not supported (PCMU, PCMA)")
        self.media = media
        self._encode, self._decode = CODECS[media.codec]
        self.remote = (media.remote_addr, media.remote_port)
        self._frame_bytes = media.clock_rate * media.ptime // 1000 * 2
        self._sender = RtpSender(media.payload_type, clock_rate=media.clock_rate,
                                 ptime_ms=media.ptime)
        if media.dtmf_receive_payload_type is not None:
            self._dtmf = DtmfReceiver(media.dtmf_receive_payload_type)
        else:
            self._inband = GoertzelDetector()  # peer sends no telephone-events: listen in-band

    def start(self) -> None:
        """Start sending (silence until a prompt plays) on the shared pacer; :meth:`close`
        stops it."""
        if self._pacer is None and self._sender is not None:
            self._pacer = _Pacer.of(self.loop, self._sender.ptime)
            self._sender.start(self._pacer.add(self))

    async def play(self, pcm: bytes, *, barge_in: bool) -> tuple[int, bool]:
        """Send ``pcm`` (8 kHz s16le); return (ms played, interrupted by a key)."""
        if barge_in and not self.keys.empty():
            return 0, True  # a key typed ahead ends a barge-in prompt at once
        self._finish_play(interrupted=True)
        play = _Play(pcm, barge_in, self.loop.create_future())
        self._play = play
        return await play.done

    async def send_key(self, key: str, *, method: KeyMethod = "rfc4733",
                       duration_ms: int = 100) -> KeyMethod:
        """Send one DTMF ``key`` and return once it is on the wire, with the method used.

        ``rfc4733``: telephone-event packets (RFC 4733 §2.5.1: updates, then the END packet three
        times) go out one per ptime in place of audio, in the stream's sequence space; the audio
        timestamp then resumes where the elapsed time puts it (RFC 3550 §5.1: it follows the
        sampling clock), with the marker bit. Falls back to ``inband`` when the peer negotiated no
        telephone-event. ``inband``: the key's dual tone replaces the outgoing audio (a prompt
        being played pauses meanwhile). ValueError (without the key) for a non-DTMF key."""
        if method not in ("rfc4733", "inband"):
            raise ValueError("method must be 'rfc4733' or 'inband'")
        TelephoneEvent.from_key(key)  # validates; the message never shows the key
        if self._pacer is None or self._sender is None:
            raise RuntimeError("MediaSession.start() was not called")
        if method == "rfc4733" and (self.media is None or self.media.dtmf_payload_type is None):
            method = "inband"
        press = _KeyPress(key, method, duration_ms, self.loop.create_future())
        if method == "inband":
            press.tone = tone(key, duration_ms)
        self._presses.append(press)
        await press.done
        return method

    def detect_prompt_ends(self) -> None:
        """Watch the received audio for the end of the peer's prompts (see
        :mod:`ars_engine.media.vad`); each end is appended to :attr:`prompt_ends`."""
        if self._vad is None:
            self._vad = PromptEndDetector()

    async def wait_prompt_end(self, count: int) -> float:
        """Wait until at least ``count`` prompt ends were seen; return the time of the
        ``count``-th (loop time). Bound it with ``asyncio.timeout``."""
        while len(self.prompt_ends) < count:
            await self._prompt_end_changed.wait()
        return self.prompt_ends[count - 1]

    def stop_playing(self) -> None:
        self._finish_play(interrupted=True)

    def start_recording(self) -> None:
        self._recording = True
        self._rec_engine = bytearray()
        self._rec_callee = bytearray()
        self._rec_ts0 = None
        self._rec_start_sample = self._sent_samples

    def stop_recording(self) -> tuple[bytes, bytes]:
        """(callee PCM, engine PCM) since :meth:`start_recording`."""
        self._recording = False
        return bytes(self._rec_callee), bytes(self._rec_engine)

    async def close(self) -> None:
        self._finish_play(interrupted=True)
        while self._presses:  # nobody will send them now: release whoever waits
            press = self._presses.popleft()
            if not press.done.done():
                press.done.set_result(None)
        if self._pacer is not None:
            await self._pacer.remove(self)
            self._pacer = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- sending ------------------------------------------------------------------------------
    def _finish_play(self, *, interrupted: bool) -> None:
        play, self._play = self._play, None
        if play is not None and not play.done.done():
            played_ms = play.offset // BYTES_PER_MS
            play.done.set_result((played_ms, interrupted))

    def _next_frame(self) -> bytes:
        play = self._play
        size = self._frame_bytes
        press = self._presses[0] if self._presses else None
        if press is not None and press.method == "inband":
            frame = press.tone[press.offset:press.offset + size]
            press.offset += len(frame)
            if press.offset >= len(press.tone):
                self._key_sent()
            return frame + bytes(size - len(frame))
        if play is None:
            return bytes(size)
        frame = play.pcm[play.offset:play.offset + size]
        play.offset += len(frame)
        if play.offset >= len(play.pcm):
            self._finish_play(interrupted=False)
        return frame + bytes(size - len(frame))

    def _send_due(self, now: float) -> None:
        """Send this session's packet for the current tick (called by the shared pacer)."""
        sender = self._sender
        if sender is None:
            return
        late = now - sender.next_deadline
        if late > MAX_BURST * sender.ptime:
            behind = int(late / sender.ptime)
            sender.skip(behind)  # a long stall: skip ahead rather than flood the peer
            log.warning("rtp sender %d frames late; skipping ahead", behind)
        press = self._presses[0] if self._presses else None
        if press is not None and press.method == "rfc4733":
            packet = self._event_packet(sender, press)
            frame = bytes(self._frame_bytes)  # the slot carries no audio
        else:
            frame = self._next_frame()
            packet = sender.media(self._encode(frame))
        if self._recording:
            self._rec_engine += frame
        self._sent_samples += len(frame) // 2
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(bytes(packet), self.remote)

    def _event_packet(self, sender: RtpSender, press: _KeyPress) -> RtpPacket:
        """The next telephone-event packet of ``press``, in the slot of one audio packet."""
        media = self.media
        assert media is not None and media.dtmf_payload_type is not None
        if press.packets is None:  # RFC 4733 §2.5.1.2: the event starts now, at this timestamp
            planner = DtmfSender(clock_rate=sender.clock_rate, ptime_ms=media.ptime,
                                 duration_ms=press.duration_ms)
            press.packets = planner.packets(press.key, sender.timestamp)
        plan = press.packets[press.offset]
        press.offset += 1
        packet = sender.event(media.dtmf_payload_type, plan.payload, plan.timestamp, plan.marker)
        sender.skip(1)  # the slot is used: the schedule and the audio clock move on one ptime
        if press.offset >= len(press.packets):
            self._key_sent()
        return packet

    def _key_sent(self) -> None:
        press = self._presses.popleft()
        if not press.done.done():
            press.done.set_result(None)

    # -- receiving ----------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            packet = RtpPacket.parse(data)
        except ProtocolError:
            self.bad_packets += 1  # a bad datagram is dropped, never fatal (STYLE rule 5)
            return
        now = self.loop.time()
        if not self._latched:
            self._latched = True
            self.remote = addr[:2]  # symmetric RTP: answer where the peer really is
            self.first_packet.set()
        if not self.receiver.feed(packet, now):
            return  # duplicate
        media = self.media
        if media is None:
            return
        if self._dtmf is not None and packet.payload_type == media.dtmf_receive_payload_type:
            for key in self._dtmf.feed(packet, int(now * 1000)):
                self._key(key.key, now)
            return
        if packet.payload_type != media.payload_type:
            return
        pcm = self._decode(packet.payload)
        if self._vad is not None and self._vad.feed(pcm):
            self.prompt_ends.append(now)
            changed, self._prompt_end_changed = self._prompt_end_changed, asyncio.Event()
            changed.set()  # wakes every waiter; they re-check the count
        if self._inband is not None:
            for event in self._inband.feed(pcm):
                self._key(event.key, now)
        if self._recording:
            self._record_callee(packet.timestamp, pcm)

    def _record_callee(self, timestamp: int, pcm: bytes) -> None:
        if self._rec_ts0 is None:
            # Align the callee's first packet with the engine audio sent so far.
            self._rec_ts0 = timestamp - (self._sent_samples - self._rec_start_sample)
        offset = ts_distance(timestamp, self._rec_ts0) * 2
        if offset < 0 or offset > 8000 * 2 * 3600:
            return  # before the recording, or a timestamp jump: ignore
        end = offset + len(pcm)
        if len(self._rec_callee) < end:
            self._rec_callee.extend(bytes(end - len(self._rec_callee)))
        self._rec_callee[offset:end] = pcm

    def _key(self, key: str, now: float) -> None:
        self.keys.put_nowait((key, now))
        if self._play is not None and self._play.barge_in:
            self._finish_play(interrupted=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error: %s", exc)  # ICMP unreachable: the peer is not listening
