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
  rather than shifting the rest) and the engine's sent audio are kept for a stereo WAV.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import ProtocolError
from ...media.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ...media.dtmf import GoertzelDetector
from ..sip.sdp import NegotiatedMedia
from .packet import RtpPacket, ts_distance
from .rfc4733 import DtmfReceiver
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
        self._latched = False
        self._encode: Callable[[bytes], bytes] = ulaw_encode
        self._decode: Callable[[bytes], bytes] = ulaw_decode
        self._sender: RtpSender | None = None
        self._dtmf: DtmfReceiver | None = None
        self._inband: GoertzelDetector | None = None
        self._task: asyncio.Task[None] | None = None
        self._play: _Play | None = None
        self._frame_bytes = 320
        self._recording = False
        self._rec_engine = bytearray()
        self._rec_callee = bytearray()
        self._rec_ts0: int | None = None
        self._rec_start_sample = 0
        self._sent_samples = 0

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
        """Start sending (silence until a prompt plays). Owned here; :meth:`close` ends it."""
        if self._task is None:
            self._task = self.loop.create_task(self._send_loop(), name="rtp-send")

    async def play(self, pcm: bytes, *, barge_in: bool) -> tuple[int, bool]:
        """Send ``pcm`` (8 kHz s16le); return (ms played, interrupted by a key)."""
        if barge_in and not self.keys.empty():
            return 0, True  # a key typed ahead ends a barge-in prompt at once
        self._finish_play(interrupted=True)
        play = _Play(pcm, barge_in, self.loop.create_future())
        self._play = play
        return await play.done

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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- sending ------------------------------------------------------------------------------
    def _finish_play(self, *, interrupted: bool) -> None:
        play, self._play = self._play, None
        if play is not None and not play.done.done():
            played_ms = play.offset // 16
            play.done.set_result((played_ms, interrupted))

    def _next_frame(self) -> bytes:
        play = self._play
        size = self._frame_bytes
        if play is None:
            return bytes(size)
        frame = play.pcm[play.offset:play.offset + size]
        play.offset += len(frame)
        if play.offset >= len(play.pcm):
            self._finish_play(interrupted=False)
        return frame + bytes(size - len(frame))

    async def _send_loop(self) -> None:
        sender = self._sender
        assert sender is not None
        sender.start(self.loop.time())
        while True:
            delay = sender.next_deadline - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > MAX_BURST * sender.ptime:
                behind = int(-delay / sender.ptime)
                sender.skip(behind)  # a long stall: skip ahead rather than flood the peer
                log.warning("rtp sender %d frames late; skipping ahead", behind)
            frame = self._next_frame()
            if self._recording:
                self._rec_engine += frame
            self._sent_samples += len(frame) // 2
            packet = sender.media(self._encode(frame))
            if self.transport is not None and self.remote is not None:
                self.transport.sendto(bytes(packet), self.remote)

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
