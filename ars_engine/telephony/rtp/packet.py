"""RTP packets (RFC 3550 §5.1): parse and serialise, plus sequence/timestamp serial arithmetic.

Sans-I/O: bytes in, :class:`RtpPacket` out and back. Bad input raises only
:class:`~ars_engine.errors.ProtocolError` (``protocol="rtp"``) with the byte offset where the
problem was seen; building bytes from out-of-range fields is a local bug and raises ``ValueError``.

Header layout (RFC 3550 §5.1), 12 bytes then the CSRC list::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |                             SSRC                              |
    |                        CSRC list (CC × 32 bits)               |

Round trip: ``RtpPacket.parse(bytes(p)) == p`` for every valid packet, and
``bytes(RtpPacket.parse(data)) == data`` for every packet whose padding octets, apart from the
final count octet, are zero (the content of padding is not kept: RFC 3550 §5.1 gives it no
meaning).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ...errors import ProtocolError

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "RtpHeaderExtension",
    "RtpPacket",
    "seq_distance",
    "seq_newer",
    "ts_distance",
    "ts_newer",
]

HEADER_SIZE = 12
HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_EXTENSION_HEADER = struct.Struct("!HH")
_VERSION = 2


@dataclass(frozen=True, slots=True)
class RtpHeaderExtension:
    """A header extension, kept raw (RFC 3550 §5.3.1): the 16-bit profile-defined value and the
    data (a whole number of 32-bit words). RFC 8285 one/two-byte elements are not decoded."""

    profile: int
    data: bytes = b""

    def __repr__(self) -> str:
        return f"RtpHeaderExtension(0x{self.profile:04x}, {len(self.data)} B)"


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (version 2). ``padding_size`` counts the padding octets including the
    final count octet (0 = no padding). The payload is never shown in ``repr``: a
    telephone-event payload carries the key pressed."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpHeaderExtension | None = None
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; raise :class:`ProtocolError` if it is not a valid RTP packet."""
        size = len(data)
        if size < HEADER_SIZE:
            raise ProtocolError("rtp", size, f"{size} bytes, shorter than the 12-byte header")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != _VERSION:
            raise ProtocolError("rtp", 0, f"version {first >> 6}, expected 2")
        count = first & 0x0F
        pos = HEADER_SIZE + 4 * count
        if pos > size:
            raise ProtocolError("rtp", HEADER_SIZE, f"CSRC count {count} runs past the end")
        csrc: tuple[int, ...] = struct.unpack_from(f"!{count}I", data, HEADER_SIZE) if count else ()
        extension = None
        if first & 0x10:  # RFC 3550 §5.3.1: profile (16 bits), length in 32-bit words (16 bits)
            if pos + 4 > size:
                raise ProtocolError("rtp", pos, "header extension runs past the end")
            profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
            start, pos = pos + 4, pos + 4 + 4 * words
            if pos > size:
                raise ProtocolError("rtp", start - 2, f"header extension of {words} words "
                                    "runs past the end")
            extension = RtpHeaderExtension(profile, bytes(data[start:pos]))
        end = size
        padding = 0
        if first & 0x20:  # RFC 3550 §5.1: the last octet counts the padding, itself included
            padding = data[-1]
            if padding == 0:
                raise ProtocolError("rtp", size - 1, "padding bit set but padding count is 0")
            if padding > size - pos:
                raise ProtocolError("rtp", size - 1, f"padding count {padding} exceeds the "
                                    f"{size - pos} bytes after the header")
            end = size - padding
        return cls(second & 0x7F, sequence, timestamp, ssrc, bytes(data[pos:end]),
                   bool(second & 0x80), csrc, extension, padding)

    def __bytes__(self) -> bytes:
        """Serialise; raise ``ValueError`` if a field is out of range."""
        if not 0 <= self.payload_type <= 0x7F:
            raise ValueError(f"payload type {self.payload_type} out of range 0-127")
        if len(self.csrc) > 15:
            raise ValueError(f"{len(self.csrc)} CSRCs, at most 15")
        if not 0 <= self.padding_size <= 0xFF:
            raise ValueError(f"padding size {self.padding_size} out of range 0-255")
        first = (_VERSION << 6 | (0x20 if self.padding_size else 0)
                 | (0x10 if self.extension is not None else 0) | len(self.csrc))
        second = (0x80 if self.marker else 0) | self.payload_type
        try:
            parts = [HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
            if self.extension is not None:
                words, rest = divmod(len(self.extension.data), 4)
                if rest:
                    raise ValueError("header extension data must be whole 32-bit words")
                parts.append(_EXTENSION_HEADER.pack(self.extension.profile, words))
                parts.append(self.extension.data)
        except struct.error as exc:
            raise ValueError(f"RTP field out of range: {exc}") from exc
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return b"".join(parts)

    def __repr__(self) -> str:
        flags = " M" if self.marker else ""
        return (f"RtpPacket(pt={self.payload_type}, seq={self.sequence}, ts={self.timestamp}, "
                f"ssrc=0x{self.ssrc:08x}{flags}, {len(self.payload)} B)")


# -- serial arithmetic (RFC 3550 §A.1, RFC 1982): numbers wrap, so "newer" means "less than half
# the number space ahead". At exactly half-way neither number is newer than the other.
def _distance(a: int, b: int, bits: int) -> int:
    span = 1 << bits
    d = (a - b) & (span - 1)
    return d - span if d >= span >> 1 else d


def seq_distance(a: int, b: int) -> int:
    """Signed steps from sequence number ``b`` forward to ``a``, in [-32768, 32767]
    (``seq_distance(2, 65535) == 3``)."""
    return _distance(a, b, 16)


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b``, across the 16-bit wrap."""
    return _distance(a, b, 16) > 0


def ts_distance(a: int, b: int) -> int:
    """Signed clock ticks from RTP timestamp ``b`` forward to ``a``, across the 32-bit wrap."""
    return _distance(a, b, 32)


def ts_newer(a: int, b: int) -> bool:
    """True if RTP timestamp ``a`` comes after ``b``, across the 32-bit wrap."""
    return _distance(a, b, 32) > 0
