"""RTP packets (RFC 3550 §5.1): recorded-style bytes, every malformed branch, serial arithmetic,
fuzzing; and the import hygiene of every sans-I/O core written for issue 4."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.errors import ProtocolError
from ars_engine.telephony.rtp.packet import (
    RtpHeaderExtension,
    RtpPacket,
    seq_distance,
    seq_newer,
    ts_distance,
    ts_newer,
)

SSRC = 0x5D3A1F07


def header(first: int, second: int, seq: int = 4660, ts: int = 160_000, ssrc: int = SSRC) -> bytes:
    return struct.pack("!BBHII", first, second, seq, ts, ssrc)


G711 = header(0x80, 0x00) + bytes([0xFF]) * 160  # PCMU, 20 ms of silence: 172 bytes
DTMF_START = header(0x80, 0x80 | 101) + bytes.fromhex("050a00a0")  # marker, PT 101, key + 160
WITH_CSRC = header(0x82, 0x08) + struct.pack("!II", 0x11111111, 0x22222222) + b"\xd5" * 4
WITH_EXTENSION = header(0x90, 0x00) + bytes.fromhex("bede0001" "10ff0000") + b"\xff" * 8
WITH_PADDING = header(0xA0, 0x08) + b"\xd5" * 5 + b"\x00\x00\x03"
EVERYTHING = (header(0xB1, 0x80 | 96) + struct.pack("!I", 7) + bytes.fromhex("10000002")
              + bytes(8) + b"payload" + b"\x00\x00\x00\x04")  # CSRC, extension, padding, M


# -- recorded-style packets: fields, and bytes(parse(data)) == data --------------------------------
def test_g711_packet_fields_and_round_trip() -> None:
    p = RtpPacket.parse(G711)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc) == (0, 4660, 160_000, SSRC)
    assert not p.marker and p.csrc == () and p.extension is None and p.padding_size == 0
    assert p.payload == b"\xff" * 160
    assert bytes(p) == G711 and len(G711) == 172


def test_telephone_event_packet_keeps_marker_and_payload_type() -> None:
    p = RtpPacket.parse(DTMF_START)
    assert p.marker and p.payload_type == 101 and p.payload == bytes.fromhex("050a00a0")
    assert bytes(p) == DTMF_START


def test_csrc_list_is_parsed_and_written_back() -> None:
    p = RtpPacket.parse(WITH_CSRC)
    assert p.csrc == (0x11111111, 0x22222222) and p.payload == b"\xd5" * 4
    assert bytes(p) == WITH_CSRC


def test_header_extension_is_kept_raw() -> None:
    p = RtpPacket.parse(WITH_EXTENSION)
    assert p.extension == RtpHeaderExtension(0xBEDE, bytes.fromhex("10ff0000"))
    assert p.payload == b"\xff" * 8
    assert bytes(p) == WITH_EXTENSION


def test_padding_is_removed_from_the_payload_and_restored() -> None:
    p = RtpPacket.parse(WITH_PADDING)
    assert p.padding_size == 3 and p.payload == b"\xd5" * 5
    assert bytes(p) == WITH_PADDING


def test_all_header_features_together() -> None:
    p = RtpPacket.parse(EVERYTHING)
    assert p.marker and p.payload_type == 96 and p.csrc == (7,)
    assert p.extension == RtpHeaderExtension(0x1000, bytes(8))
    assert p.payload == b"payload" and p.padding_size == 4
    assert bytes(p) == EVERYTHING


def test_padding_may_take_every_byte_after_the_header() -> None:
    data = header(0xA0, 0) + b"\x00\x00\x00\x04"
    p = RtpPacket.parse(data)
    assert p.payload == b"" and p.padding_size == 4 and bytes(p) == data


def test_non_zero_padding_content_is_not_kept() -> None:
    # RFC 3550 gives padding octets no meaning: the round trip writes zeros.
    p = RtpPacket.parse(header(0xA0, 0) + b"ab\xee\x02")
    assert p.payload == b"ab" and bytes(p) == header(0xA0, 0) + b"ab\x00\x02"


def test_parse_accepts_bytearray_and_memoryview() -> None:
    assert RtpPacket.parse(bytearray(G711)) == RtpPacket.parse(memoryview(G711))  # type: ignore[arg-type]


def test_repr_is_short_and_never_shows_the_payload() -> None:
    text = repr(RtpPacket.parse(DTMF_START))
    assert text == f"RtpPacket(pt=101, seq=4660, ts=160000, ssrc=0x{SSRC:08x} M, 4 B)"
    assert "050a" not in text


# -- malformed input: ProtocolError("rtp", offset, …) and nothing else -----------------------------
@pytest.mark.parametrize(("data", "offset", "words"), [
    (b"", 0, "shorter than the 12-byte header"),
    (G711[:11], 11, "shorter than the 12-byte header"),
    (header(0x00, 0), 0, "version 0"),
    (header(0x40, 0), 0, "version 1"),
    (header(0xC0, 0), 0, "version 3"),
    (header(0x81, 0), 12, "CSRC count 1 runs past the end"),
    (header(0x8F, 0) + bytes(56), 12, "CSRC count 15"),
    (header(0x90, 0) + b"\xbe\xde", 12, "header extension runs past the end"),
    (header(0x90, 0) + bytes.fromhex("bede0002") + bytes(4), 14, "2 words runs past the end"),
    (header(0xA0, 0) + b"\xff\x00", 13, "padding count is 0"),
    (header(0xA0, 0) + b"\xff\x05", 13, "padding count 5 exceeds the 2 bytes"),
    (header(0xA0, 0), 11, "padding count"),  # the count octet would be inside the header
    (header(0xB0, 0) + bytes.fromhex("bede0000") + b"\x09", 16, "padding count 9"),
])
def test_malformed_packets_raise_protocol_error_with_offset(data: bytes, offset: int,
                                                            words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        RtpPacket.parse(data)
    assert caught.value.protocol == "rtp"
    assert caught.value.offset == offset
    assert words in caught.value.message


@pytest.mark.parametrize("changes", [
    {"payload_type": 128}, {"payload_type": -1}, {"sequence": 65536}, {"timestamp": 1 << 32},
    {"ssrc": -1}, {"csrc": tuple(range(16))}, {"csrc": (1 << 32,)}, {"padding_size": 256},
    {"extension": RtpHeaderExtension(0x10000)}, {"extension": RtpHeaderExtension(1, b"abc")},
])
def test_serialising_out_of_range_fields_raises_value_error(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"payload_type": 0, "sequence": 1, "timestamp": 2, "ssrc": 3}
    fields.update(changes)
    with pytest.raises(ValueError):
        bytes(RtpPacket(**fields))  # type: ignore[arg-type]


# -- serial arithmetic -----------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "distance"), [
    (5, 3, 2), (3, 5, -2), (0, 65535, 1), (2, 65535, 3), (65535, 0, -1), (7, 7, 0),
    (32767, 0, 32767), (32768, 0, -32768), (0, 32768, -32768),
])
def test_sequence_distance_wraps_at_16_bits(a: int, b: int, distance: int) -> None:
    assert seq_distance(a, b) == distance
    assert seq_newer(a, b) == (distance > 0)


def test_half_way_is_newer_in_neither_direction() -> None:
    assert not seq_newer(32768, 0) and not seq_newer(0, 32768)
    assert not ts_newer(1 << 31, 0) and not ts_newer(0, 1 << 31)


@pytest.mark.parametrize(("a", "b", "distance"), [
    (160, 0, 160), (0, 160, -160), (100, 0xFFFFFF9C, 200), (0xFFFFFF9C, 100, -200),
])
def test_timestamp_distance_wraps_at_32_bits(a: int, b: int, distance: int) -> None:
    assert ts_distance(a, b) == distance
    assert ts_newer(a, b) == (distance > 0)


@given(st.integers(0, 0xFFFF), st.integers(-32767, 32767))
def test_sequence_newer_follows_the_forward_distance(base: int, step: int) -> None:
    later = (base + step) & 0xFFFF
    assert seq_distance(later, base) == step
    assert seq_newer(later, base) == (step > 0)


# -- fuzzing ---------------------------------------------------------------------------------------
@given(st.binary(max_size=96))
def test_arbitrary_bytes_parse_or_raise_protocol_error_only(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except ProtocolError:
        return
    assert RtpPacket.parse(bytes(packet)) == packet


@given(st.binary(min_size=12, max_size=64))
def test_arbitrary_version_2_headers_parse_or_raise_protocol_error_only(data: bytes) -> None:
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]  # reach past the version check
    with contextlib.suppress(ProtocolError):
        RtpPacket.parse(data)


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.builds(RtpHeaderExtension, st.integers(0, 0xFFFF),
                                    st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding_size=st.integers(0, 255),
)


@given(packets)
def test_generated_packets_round_trip(packet: RtpPacket) -> None:
    data = bytes(packet)
    assert RtpPacket.parse(data) == packet
    assert bytes(RtpPacket.parse(data)) == data
