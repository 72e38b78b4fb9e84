"""RTP send pacing and receive statistics, sans-I/O (RFC 3550).

Sender rules:

* packet ``n`` of a stream is due at ``start + n · ptime``: deadlines are absolute, so a late
  wake-up never shifts the packets after it (no drift, no accumulated jitter);
* sequence numbers increase by one per packet, modulo 2¹⁶; the RTP timestamp increases by the
  samples a packet carries (160 for 20 ms at 8 kHz), modulo 2³²; both start at random values
  (RFC 3550 §5.1);
* the marker bit is set on the first packet of a talkspurt (RFC 3551 §4.1): the first packet, and
  the first after :meth:`RtpSender.skip` left a gap;
* telephone-events (RFC 4733) share the sequence space; their timestamp is the event's start.

Receiver rules: packets are counted, losses and duplicates found from sequence numbers, and the
interarrival jitter estimated as in RFC 3550 §6.4.1 / appendix A.8.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .packet import HEADER, RtpPacket, seq_distance


class RtpSender:
    """Builds the packets of one outgoing stream and says when each is due."""

    def __init__(self, payload_type: int, *, ssrc: int | None = None, clock_rate: int = 8000,
                 ptime_ms: int = 20, sequence: int | None = None,
                 timestamp: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.clock_rate = clock_rate
        self.ptime = ptime_ms / 1000
        self.samples_per_packet = clock_rate * ptime_ms // 1000
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        self._start: float | None = None
        self._index = 0
        self._talkspurt = True
        self.sent = 0

    def start(self, now: float) -> None:
        """Anchor the schedule: packet 0 is due now."""
        self._start = now
        self._index = 0

    @property
    def next_deadline(self) -> float:
        """When the next packet is due (absolute, monotonic seconds)."""
        if self._start is None:
            raise RuntimeError("RtpSender.start() was not called")
        return self._start + self._index * self.ptime

    def media(self, payload: bytes) -> RtpPacket:
        """The next audio packet; advances the schedule by one ptime."""
        return RtpPacket.parse(self.media_wire(payload))

    def media_wire(self, payload: bytes) -> bytes:
        """The next audio packet's bytes; advances the schedule by one ptime (the per-packet
        hot path: no packet object, one ``struct.pack``)."""
        header = HEADER.pack(0x80, (0x80 if self._talkspurt else 0) | self.payload_type,
                             self.sequence, self.timestamp, self.ssrc)
        self._talkspurt = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.samples_per_packet) & 0xFFFFFFFF
        self._index += 1
        self.sent += 1
        return header + payload

    def skip(self, packets: int = 1) -> None:
        """Leave ``packets`` slots empty (silence suppression): time advances, seq does not."""
        self.timestamp = (self.timestamp + packets * self.samples_per_packet) & 0xFFFFFFFF
        self._index += packets
        self._talkspurt = True

    def event(self, payload_type: int, payload: bytes, event_timestamp: int,
              marker: bool) -> RtpPacket:
        """A telephone-event packet (RFC 4733 §2.1): same SSRC and sequence space, the event's
        start as timestamp. Does not move the audio schedule."""
        packet = RtpPacket(payload_type, self.sequence, event_timestamp & 0xFFFFFFFF, self.ssrc,
                           payload, marker=marker)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.sent += 1
        return packet


@dataclass(slots=True)
class ReceiveStats:
    """What a receiver saw. ``jitter`` is in timestamp units (divide by the clock rate)."""

    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    lost: int = 0
    jitter: float = 0.0
    interarrival_ms: list[float] = field(default_factory=list)


DUPLICATE_WINDOW = 1024  # sequence numbers behind the highest in which duplicates are found
_WINDOW_MASK = (1 << DUPLICATE_WINDOW) - 1


class RtpReceiver:
    """Tracks one incoming stream (one SSRC at a time; a new SSRC restarts the counters)."""

    def __init__(self, clock_rate: int = 8000, *, keep_interarrival: bool = False) -> None:
        self.clock_rate = clock_rate
        self.stats = ReceiveStats()
        self.ssrc: int | None = None
        self._highest: int | None = None
        # bit i set: sequence number (highest - i) arrived; a window of DUPLICATE_WINDOW numbers
        # (a 128-byte int per call, where a set of the numbers seen grew to ~240 KiB)
        self._window = 0
        self._last_arrival: float | None = None
        self._last_transit: float | None = None
        self._keep = keep_interarrival

    def feed(self, packet: RtpPacket, arrival: float) -> bool:
        """Account for ``packet`` that arrived at ``arrival`` (seconds). Returns False for a
        duplicate, which the caller should drop."""
        s = self.stats
        if packet.ssrc != self.ssrc:
            self.ssrc = packet.ssrc
            self._highest = None
            self._window = 0
            self._last_transit = None
        seq = packet.sequence
        if self._highest is None:
            self._highest, self._window = seq, 1
        else:
            gap = seq_distance(seq, self._highest)  # steps forward from the highest seen
            if gap > 0:
                self._window = ((self._window << gap) | 1) & _WINDOW_MASK
                s.lost += gap - 1
                self._highest = seq
            else:
                behind = -gap
                if behind < DUPLICATE_WINDOW:
                    if self._window >> behind & 1:
                        s.duplicates += 1
                        return False
                    self._window |= 1 << behind
                # older than the window: taken as a late packet (it cannot be told apart)
                s.reordered += 1
                s.lost = max(s.lost - 1, 0)  # a late packet fills a gap counted as lost
        s.received += 1
        # RFC 3550 A.8: J += (|D| - J) / 16, D from transit-time differences.
        transit = arrival * self.clock_rate - packet.timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d < 2**31:  # ignore timestamp jumps (new talkspurt base, wrap)
                s.jitter += (d - s.jitter) / 16
        self._last_transit = transit
        if self._keep and self._last_arrival is not None:
            s.interarrival_ms.append((arrival - self._last_arrival) * 1000)
        self._last_arrival = arrival
        return True
