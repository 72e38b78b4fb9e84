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
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ...errors import ProtocolError
from ...media.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ...media.clip import BYTES_PER_MS
from ...media.dtmf import GoertzelDetector, tone
from ...media.vad import PromptEndDetector
from ..sip.sdp import NegotiatedMedia
from .pacer import MAX_BURST, Pacer
from .packet import RtpPacket, ts_distance
from .rfc4733 import DtmfPacket, DtmfReceiver, DtmfSender, TelephoneEvent
from .session import RtpReceiver, RtpSender

log = logging.getLogger("ars_engine.rtp")
PEER_SILENT_AFTER = 0.06  # s without the peer's audio (3 packets) before it counts as silence

CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "PCMU": (ulaw_encode, ulaw_decode),
    "PCMA": (alaw_encode, alaw_decode),
}


ENCODE_CHUNK_FRAMES = 50  # a prompt is encoded one second at a time as it plays


@dataclass(slots=True)
class _Play:
    """A prompt being sent. ``offset``: PCM bytes sent so far; ``coded``: the G.711 bytes of
    ``pcm[coded_from:coded_from + 2·len(coded)]``, encoded a chunk at a time ahead of need."""

    pcm: bytes
    barge_in: bool
    done: asyncio.Future[tuple[int, bool]]
    offset: int = 0
    coded: bytes = b""
    coded_from: int = 0


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



class MediaSession(asyncio.DatagramProtocol):
    """RTP for one call. Create with :meth:`open`, then :meth:`configure` and :meth:`start`."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None  # sent on directly (see _send_due)
        self.dropped_sends = 0  # packets the kernel refused (socket buffer full)
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
        self._pacer: Pacer | None = None
        self._play: _Play | None = None
        self._frame_bytes = 320
        self._silence = b"\xff" * 160  # one ptime of encoded silence (set by configure)
        self._sending = True  # False while the peer holds the call (see retarget)
        self._recording = False
        self._rec_engine = bytearray()
        self._rec_callee = bytearray()
        self._rec_ts0: int | None = None
        self._rec_start_sample = 0
        self._sent_samples = 0
        self._presses: deque[_KeyPress] = deque()
        self._vad: PromptEndDetector | None = None
        self.prompt_ends: list[float] = []  # loop times at which the peer's prompts ended
        self._last_audio: float | None = None  # when the peer's last audio packet arrived
        self._prompt_end_changed = asyncio.Event()


    @property
    def packets_sent(self) -> int:
        """RTP packets this session put on the wire (built and paced, minus those the kernel
        refused)."""
        built = self._sender.sent if self._sender is not None else 0
        return max(built - self.dropped_sends, 0)

    @classmethod
    async def open(cls, host: str, port: int = 0) -> MediaSession:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
            transport, protocol = await loop.create_datagram_endpoint(cls, sock=sock)
        except BaseException:
            sock.close()
            raise
        protocol.transport = transport
        protocol._sock = sock
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
        self._silence = self._encode(bytes(self._frame_bytes))
        self._sender = RtpSender(media.payload_type, clock_rate=media.clock_rate,
                                 ptime_ms=media.ptime)
        if media.dtmf_receive_payload_type is not None:
            self._dtmf = DtmfReceiver(media.dtmf_receive_payload_type)
        else:
            self._inband = GoertzelDetector()  # peer sends no telephone-events: listen in-band

    def retarget(self, media: NegotiatedMedia) -> None:
        """Apply a stream renegotiated mid-call (the peer's re-INVITE): the new remote address
        (symmetric RTP latches again on the peer's next packet), codec, payload types and
        direction (``recvonly``/``inactive``: the peer put us on hold, nothing is sent). The
        SSRC, sequence numbers and timestamps go on (RFC 3550 §5.1: one source, one clock)."""
        if media.codec not in CODECS:
            raise ValueError(f"codec {media.codec} is not supported (PCMU, PCMA)")
        self.media = media
        self._encode, self._decode = CODECS[media.codec]
        self._silence = self._encode(bytes(self._frame_bytes))
        if self._play is not None:
            self._play.coded = b""  # re-encode the rest of the prompt in the new codec
            self._play.coded_from = self._play.offset
        self.remote = (media.remote_addr, media.remote_port)
        self._latched = False
        self._sending = media.direction in ("sendrecv", "sendonly")
        if self._sender is not None:
            self._sender.payload_type = media.payload_type
        pt = media.dtmf_receive_payload_type
        if pt is None:
            self._dtmf = None
            self._inband = self._inband or GoertzelDetector()
        else:
            self._inband = None
            if self._dtmf is None or self._dtmf.payload_type != pt:
                self._dtmf = DtmfReceiver(pt)

    def start(self) -> None:
        """Start sending (silence until a prompt plays) on the shared pacer; :meth:`close`
        stops it."""
        if self._pacer is None and self._sender is not None:
            self._pacer = Pacer.of(self.loop, self._sender.ptime)
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
            self._sock = None

    # -- sending ------------------------------------------------------------------------------
    def _finish_play(self, *, interrupted: bool) -> None:
        play, self._play = self._play, None
        if play is not None and not play.done.done():
            played_ms = play.offset // BYTES_PER_MS
            play.done.set_result((played_ms, interrupted))

    def _next_payload(self) -> tuple[bytes, bytes | None]:
        """The next slot's G.711 payload, and its PCM when it is not silence."""
        play = self._play
        size = self._frame_bytes
        if play is None:
            return self._silence, None
        start = play.offset
        frame = play.pcm[start:start + size]
        at = (start - play.coded_from) // 2
        if at + size // 2 > len(play.coded):  # encode the next chunk (one call per second)
            chunk = play.pcm[start:start + size * ENCODE_CHUNK_FRAMES]
            play.coded, play.coded_from, at = self._encode(chunk), start, 0
        payload = play.coded[at:at + size // 2]
        play.offset += len(frame)
        if play.offset >= len(play.pcm):
            self._finish_play(interrupted=False)
        if len(frame) < size:  # the prompt's last, partial frame: pad with silence
            payload += self._silence[len(payload):]
            frame += bytes(size - len(frame))
        return payload, frame

    def _send_due(self, now: float) -> None:
        """Send this session's packet for the current tick (called by the shared pacer).

        The hot path (500 streams are 25,000 calls a second): prompts are encoded a second at a
        time, silence is encoded once, the header is packed straight to bytes, and the packet
        goes to the socket directly: asyncio's ``DatagramTransport.sendto`` wrapper costs about
        a microsecond more per packet and its buffering would only delay audio that is due
        now. A packet the kernel refuses (buffer full) is dropped and counted, as the network
        would drop it."""
        sender = self._sender
        if sender is None:
            return
        late = now - sender.next_deadline
        if late > MAX_BURST * sender.ptime:
            behind = int(late / sender.ptime)
            sender.skip(behind)  # a long stall: skip ahead rather than flood the peer
            log.warning("rtp sender %d frames late; skipping ahead", behind)
        if self._vad is not None:
            self._silent_peer(now)  # one 20 ms slot per tick, like a received packet
        frame: bytes | None
        if self._presses:
            wire, frame = self._key_slot(sender)
        else:
            payload, frame = self._next_payload()
            wire = sender.media_wire(payload)
        if self._recording:
            self._rec_engine += frame if frame is not None else bytes(self._frame_bytes)
        self._sent_samples += self._frame_bytes // 2
        sock, remote = self._sock, self.remote
        if sock is not None and remote is not None and self._sending:
            try:
                sock.sendto(wire, remote)
            except (BlockingIOError, InterruptedError):
                self.dropped_sends += 1
            except OSError as exc:
                self.error_received(exc)

    def _key_slot(self, sender: RtpSender) -> tuple[bytes, bytes | None]:
        """The slot of a key being sent: a telephone-event packet (no audio), or the key's
        in-band tone in place of the audio."""
        press = self._presses[0]
        if press.method == "rfc4733":
            return bytes(self._event_packet(sender, press)), None
        size = self._frame_bytes
        frame = press.tone[press.offset:press.offset + size]
        press.offset += len(frame)
        if press.offset >= len(press.tone):
            self._key_sent()
        frame += bytes(size - len(frame))
        return sender.media_wire(self._encode(frame)), frame

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
        if self._vad is not None:
            self._last_audio = now
            if self._vad.feed(pcm):
                self._prompt_ended(now)
        if self._inband is not None:
            for event in self._inband.feed(pcm):
                self._key(event.key, now)
        if self._recording:
            self._record_callee(packet.timestamp, pcm)

    def _prompt_ended(self, now: float) -> None:
        self.prompt_ends.append(now)
        changed, self._prompt_end_changed = self._prompt_end_changed, asyncio.Event()
        changed.set()  # wakes every waiter; they re-check the count

    def _silent_peer(self, now: float) -> None:
        """No audio from the peer for a while counts as silence for the prompt-end detector:
        a PBX between prompts often sends no RTP at all (Asterisk waiting for a digit)."""
        if self._last_audio is not None and now - self._last_audio > PEER_SILENT_AFTER:
            assert self._vad is not None
            if self._vad.feed(bytes(self._frame_bytes)):
                self._prompt_ended(now)

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
