"""RFC 4733 telephone-events (DTMF over RTP): the payload, a sender plan and a receiver.

Sans-I/O: no sockets, no clock. The sender returns the packets of one key press with the
offset (ms) at which the caller sends each; the receiver is fed packets with the time they
arrived and is polled at the deadline it names. Keys may be secret digits, so no ``repr`` and no
error message ever shows one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from ...errors import ProtocolError
from .packet import RtpPacket, ts_newer

__all__ = ["DTMF_KEYS", "DtmfKey", "DtmfPacket", "DtmfReceiver", "DtmfSender", "TelephoneEvent"]

# RFC 4733 §3.2, table 7: events 0-9 are the digits, 10 is *, 11 is #, 12-15 are A-D.
DTMF_KEYS = "0123456789*#ABCD"
_EVENT_OF_KEY = {key: code for code, key in enumerate(DTMF_KEYS)}
_PAYLOAD = struct.Struct("!BBH")
MAX_DURATION = 0xFFFF  # RFC 4733 §2.5.1.3: longer events are split in segments (not done here)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte telephone-event payload (RFC 4733 §2.3)::

        | event (8) |E|R| volume (6) |      duration (16)      |

    ``event`` is the event code (0-255; 0-15 are DTMF keys), ``end`` the E bit, ``volume`` the
    power in -dBm0 (0-63), ``duration`` in RTP clock ticks since the event began. The R bit is
    reserved: zero on sending, ignored on receipt (§2.3.3).
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def from_key(cls, key: str, *, end: bool = False, volume: int = 10,
                 duration: int = 0) -> TelephoneEvent:
        """The event for a DTMF key ``0-9 * # A-D``; ``ValueError`` (without the key) if not."""
        code = _EVENT_OF_KEY.get(key) if isinstance(key, str) else None
        if code is None:
            raise ValueError("not a DTMF key (expected one of 0-9 * # A-D)")
        return cls(code, end, volume, duration)

    @property
    def key(self) -> str | None:
        """The DTMF key, or None for other events (flash, fax and modem tones…)."""
        return DTMF_KEYS[self.event] if self.event < 16 else None

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse one event; :class:`ProtocolError` unless exactly 4 bytes. Several events packed
        in one payload (§2.5.1.5 redundancy) are refused too: no peer we target sends them."""
        if len(data) != 4:
            raise ProtocolError("rtp", 0, f"telephone-event payload of {len(data)} bytes, "
                                "expected 4")
        event, flags, duration = _PAYLOAD.unpack(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume <= 0x3F:
            raise ValueError(f"volume {self.volume} out of range 0-63")
        try:
            return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume,
                                 self.duration)
        except struct.error as exc:
            raise ValueError(f"telephone-event field out of range: {exc}") from exc

    def __repr__(self) -> str:
        what = "*" if self.key is not None else str(self.event)  # the key may be a secret digit
        end = ", end" if self.end else ""
        return f"TelephoneEvent({what}{end}, vol={self.volume}, dur={self.duration})"


# -- sender ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One packet to send: the RTP ``marker`` and ``timestamp`` (the event's start, the same in
    every packet of the event), the payload, and ``offset_ms`` after the first packet."""

    event: TelephoneEvent
    marker: bool
    timestamp: int
    offset_ms: int

    @property
    def payload(self) -> bytes:
        return bytes(self.event)

    def rtp(self, payload_type: int, sequence: int, ssrc: int) -> RtpPacket:
        """The RTP packet, with the sequence number the caller's stream is at."""
        return RtpPacket(payload_type, sequence, self.timestamp, ssrc, self.payload, self.marker)

    def __repr__(self) -> str:
        marker = " M" if self.marker else ""
        return f"DtmfPacket({self.event!r}, ts={self.timestamp}{marker}, +{self.offset_ms} ms)"


class DtmfSender:
    """Plans the packets of one key press (RFC 4733 §2.5.1).

    Rules, for a key of ``duration_ms`` at ``ptime_ms`` packetisation:

    * one packet every ``ptime_ms``, all with the RTP timestamp of the event's start (§2.5.1.2);
    * the first has the marker bit set (§2.5.1.2) and a duration of one packet interval; each
      next one reports the duration so far, one interval more (§2.5.1.3 updates);
    * the last update is the END packet (E bit, the full duration), sent three times in all at
      the same interval (§2.5.1.4: the final packet SHOULD be sent three times);
    * the duration is rounded up to whole intervals and must fit in 16 bits (8.19 s at 8 kHz);
      longer events would need §2.5.1.3 segments, which a key press never needs.

    So a 100 ms key at 20 ms / 8 kHz is 7 packets: durations 160, 320, 480, 640, then 800 ×3 with
    E set, at +0, +20 … +120 ms. The caller assigns sequence numbers (one per packet, the
    retransmitted END packets included: each is a new RTP packet) and stops its audio stream
    while the event plays; its audio timestamp then resumes at ``start + duration_ticks``.
    """

    __slots__ = ("clock_rate", "duration_ms", "ptime_ms", "volume")

    END_REPEATS = 3

    def __init__(self, *, clock_rate: int = 8000, ptime_ms: int = 20, duration_ms: int = 100,
                 volume: int = 10) -> None:
        if clock_rate <= 0 or ptime_ms <= 0 or duration_ms <= 0:
            raise ValueError("clock rate, ptime and duration must be positive")
        if not 0 <= volume <= 0x3F:
            raise ValueError(f"volume {volume} out of range 0-63")
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self.duration_ms = duration_ms
        self.volume = volume
        if self.duration_ticks > MAX_DURATION:
            raise ValueError(f"a {duration_ms} ms event does not fit in one 16-bit duration")

    @property
    def interval_ticks(self) -> int:
        """Clock ticks in one packet interval (160 at 8 kHz and 20 ms)."""
        return self.clock_rate * self.ptime_ms // 1000

    @property
    def duration_ticks(self) -> int:
        """The event's full duration in ticks, rounded up to whole packet intervals."""
        intervals = -(-self.duration_ms // self.ptime_ms)
        return intervals * self.interval_ticks

    def packets(self, key: str, start_timestamp: int) -> list[DtmfPacket]:
        """The packets of one press of ``key`` starting at RTP timestamp ``start_timestamp``."""
        TelephoneEvent.from_key(key)  # validate before planning
        timestamp = start_timestamp & 0xFFFFFFFF
        step = self.interval_ticks
        updates = self.duration_ticks // step
        plan: list[DtmfPacket] = []
        for n in range(1, updates):
            event = TelephoneEvent.from_key(key, volume=self.volume, duration=n * step)
            plan.append(DtmfPacket(event, n == 1, timestamp, (n - 1) * self.ptime_ms))
        final = TelephoneEvent.from_key(key, end=True, volume=self.volume,
                                        duration=self.duration_ticks)
        for repeat in range(self.END_REPEATS):
            offset = (updates - 1 + repeat) * self.ptime_ms
            plan.append(DtmfPacket(final, updates == 1 and repeat == 0, timestamp, offset))
        return plan


# -- receiver -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DtmfKey:
    """A key press received: the key, the sender's SSRC and event ``timestamp`` (which identify
    the event), ``at_ms`` (the ``now_ms`` of the packet or poll that reported it), the
    ``duration`` in ticks known when reported, and ``ended`` (an END packet had been seen)."""

    key: str
    ssrc: int
    timestamp: int
    at_ms: int
    duration: int = 0
    ended: bool = False

    def __repr__(self) -> str:  # the key may be a secret digit
        end = ", ended" if self.ended else ""
        return f"DtmfKey(*, ssrc=0x{self.ssrc:08x}, ts={self.timestamp}, at {self.at_ms} ms{end})"


@dataclass(slots=True)
class _Event:
    """The newest event seen from one SSRC."""

    timestamp: int
    key: str
    last_ms: int
    duration: int
    reported: bool = False
    closed: bool = False


# The receiver's rules (RFC 4733 §2.5.2 leaves reporting to the application):
#
# 1. An event is identified by (SSRC, RTP timestamp) (§2.5.1.2: every packet of one event carries
#    the event's start timestamp). Per SSRC only the newest event is tracked; "newer" is 32-bit
#    serial arithmetic. A packet of an older event than the newest is late: dropped. So keys come
#    out in the sender's order, never twice, even under reordering (a key whose every packet
#    arrives after a later key's first packet is lost, not reported out of order).
# 2. report_on="start" (default): a key is reported on the FIRST packet seen of a new event,
#    whatever it is (start, update or END), so losing the start packet delays nothing and the
#    latency is one packet; the in-band Goertzel detector also reports at press start.
#    report_on="end": a key is reported on its first END packet, or, if its END packets are all
#    lost, when a newer event from the same SSRC begins or when poll() finds it silent for
#    timeout_ms. Then DtmfKey.duration is the press length (evidence timelines).
# 3. After an END packet (or the timeout) the event is closed: retransmitted END packets and
#    late updates with its timestamp change nothing.
# 4. Packets whose event code is not a DTMF key (16 flash, fax tones…) and packets with another
#    payload type are ignored; a telephone-event payload that is not 4 bytes raises ProtocolError
#    (the transport logs and drops it).
# 5. Within one event the code is taken from its first packet seen; a differing code later with
#    the same timestamp is a broken sender and is ignored.
class DtmfReceiver:
    """Sans-I/O RFC 4733 receiver: ``feed(packet, now_ms)`` and ``poll(now_ms)`` return the
    :class:`DtmfKey` presses to act on, each exactly once (rules above)."""

    __slots__ = ("_events", "payload_type", "report_on", "timeout_ms")

    MAX_SSRCS = 16  # a call has one remote SSRC (a new one after a re-INVITE): bound the memory

    def __init__(self, payload_type: int, *, report_on: Literal["start", "end"] = "start",
                 timeout_ms: int = 500) -> None:
        if report_on not in ("start", "end"):
            raise ValueError("report_on must be 'start' or 'end'")
        self.payload_type = payload_type
        self.report_on = report_on
        self.timeout_ms = timeout_ms
        self._events: dict[int, _Event] = {}

    def feed(self, packet: RtpPacket, now_ms: int) -> list[DtmfKey]:
        """Take one received RTP packet; return the keys it reveals (0, 1, or 2 in "end" mode
        when it supersedes an event whose END was lost)."""
        if packet.payload_type != self.payload_type:
            return []
        event = TelephoneEvent.parse(packet.payload)
        key = event.key
        if key is None:
            return []
        out: list[DtmfKey] = []
        current = self._events.get(packet.ssrc)
        if current is None or ts_newer(packet.timestamp, current.timestamp):
            if current is not None and not current.reported:  # only in "end" mode
                out.append(self._report(packet.ssrc, current, now_ms))
            current = _Event(packet.timestamp, key, now_ms, event.duration)
            self._remember(packet.ssrc, current)
            if self.report_on == "start":
                current.closed = event.end
                out.append(self._report(packet.ssrc, current, now_ms, ended=event.end))
                return out
        elif packet.timestamp != current.timestamp or current.closed:
            return out  # a late packet of an older event, or of a closed one
        current.last_ms = now_ms
        current.duration = max(current.duration, event.duration)
        if event.end:
            current.closed = True
            if not current.reported:
                out.append(self._report(packet.ssrc, current, now_ms, ended=True))
        return out

    def poll(self, now_ms: int) -> list[DtmfKey]:
        """Close events silent for ``timeout_ms`` (END lost); in "end" mode report them."""
        out: list[DtmfKey] = []
        for ssrc, event in self._events.items():
            if not event.closed and now_ms - event.last_ms >= self.timeout_ms:
                event.closed = True
                if not event.reported:
                    out.append(self._report(ssrc, event, now_ms))
        return out

    def next_deadline(self) -> int | None:
        """When :meth:`poll` has work (ms, the clock of ``now_ms``), or None."""
        open_events = [e.last_ms + self.timeout_ms for e in self._events.values() if not e.closed]
        return min(open_events) if open_events else None

    @property
    def held(self) -> bool:
        """True while an event is open (a key is down as far as we know)."""
        return any(not e.closed for e in self._events.values())

    def _remember(self, ssrc: int, event: _Event) -> None:
        self._events.pop(ssrc, None)
        if len(self._events) >= self.MAX_SSRCS:  # forget the SSRC heard from least recently
            del self._events[next(iter(self._events))]
        self._events[ssrc] = event

    @staticmethod
    def _report(ssrc: int, event: _Event, now_ms: int, *, ended: bool = False) -> DtmfKey:
        event.reported = True
        return DtmfKey(event.key, ssrc, event.timestamp, now_ms, event.duration, ended)

    def __repr__(self) -> str:
        return (f"DtmfReceiver(pt={self.payload_type}, report_on={self.report_on}, "
                f"{len(self._events)} ssrc)")
