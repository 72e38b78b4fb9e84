"""RFC 4733 telephone-events: the payload, the sender's exact packet plan, and the receiver under
loss, duplication, reordering, timeouts and timestamp wrap-around."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ars_engine.errors import ProtocolError
from ars_engine.telephony.rtp.packet import RtpPacket
from ars_engine.telephony.rtp.rfc4733 import (
    DTMF_KEYS,
    DtmfKey,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
)

PT = 101
SSRC = 0x1234ABCD
MODES = ("start", "end")


# -- payload ---------------------------------------------------------------------------------------
def test_payload_layout_event_end_volume_duration() -> None:
    event = TelephoneEvent.from_key("5", end=True, volume=10, duration=800)
    assert bytes(event) == bytes.fromhex("058a0320")
    assert TelephoneEvent.parse(bytes.fromhex("058a0320")) == event


@pytest.mark.parametrize(("code", "key"), list(enumerate(DTMF_KEYS)))
def test_event_codes_map_to_keys(code: int, key: str) -> None:
    assert TelephoneEvent.from_key(key).event == code
    assert TelephoneEvent(code).key == key


def test_events_past_15_are_not_keys() -> None:
    assert TelephoneEvent(16).key is None  # flash
    assert TelephoneEvent.parse(bytes([36, 0, 0, 0])).key is None  # a fax tone


def test_reserved_bit_is_ignored_on_receipt() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("05ca0320")) == TelephoneEvent(5, True, 10, 800)


@pytest.mark.parametrize("size", [0, 1, 3, 5, 8])
def test_payload_of_wrong_length_raises_protocol_error(size: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        TelephoneEvent.parse(bytes(size))
    assert caught.value.protocol == "rtp" and f"{size} bytes" in caught.value.message


@given(st.binary(min_size=4, max_size=4))
def test_any_four_bytes_round_trip_with_the_reserved_bit_cleared(data: bytes) -> None:
    assert bytes(TelephoneEvent.parse(data)) == data[:1] + bytes([data[1] & 0xBF]) + data[2:]


@pytest.mark.parametrize("bad", ["", "12", "a", "E", "x", 5])
def test_from_key_refuses_non_keys_without_echoing_them(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        TelephoneEvent.from_key(bad)  # type: ignore[arg-type]
    assert repr(bad) not in str(caught.value)


@pytest.mark.parametrize("event", [TelephoneEvent(0, volume=64), TelephoneEvent(256),
                                   TelephoneEvent(1, duration=1 << 16)])
def test_serialising_out_of_range_fields_raises_value_error(event: TelephoneEvent) -> None:
    with pytest.raises(ValueError):
        bytes(event)


# -- sender ----------------------------------------------------------------------------------------
def test_sender_plan_for_a_100_ms_key_is_exact() -> None:
    plan = DtmfSender().packets("7", 1_000)
    assert [p.marker for p in plan] == [True] + [False] * 6
    assert [p.event.duration for p in plan] == [160, 320, 480, 640, 800, 800, 800]
    assert [p.event.end for p in plan] == [False] * 4 + [True] * 3
    assert {p.timestamp for p in plan} == {1_000}
    assert [p.offset_ms for p in plan] == [0, 20, 40, 60, 80, 100, 120]
    assert {p.event.key for p in plan} == {"7"} and {p.event.volume for p in plan} == {10}
    assert [p.payload for p in plan[-3:]] == [bytes.fromhex("078a0320")] * 3


def test_a_one_packet_key_marks_its_first_end_packet() -> None:
    plan = DtmfSender(duration_ms=20).packets("#", 0)
    assert [(p.marker, p.event.end, p.event.duration) for p in plan] == [
        (True, True, 160), (False, True, 160), (False, True, 160)]


def test_duration_is_rounded_up_to_whole_packets() -> None:
    sender = DtmfSender(duration_ms=50)
    assert sender.duration_ticks == 480
    assert [p.event.duration for p in sender.packets("1", 0)] == [160, 320, 480, 480, 480]


def test_other_clock_rates_and_packetisation() -> None:
    plan = DtmfSender(clock_rate=16_000, ptime_ms=40, duration_ms=120).packets("A", 5)
    assert [p.event.duration for p in plan] == [640, 1280, 1920, 1920, 1920]
    assert [p.offset_ms for p in plan] == [0, 40, 80, 120, 160]


def test_start_timestamp_wraps_to_32_bits() -> None:
    assert {p.timestamp for p in DtmfSender().packets("0", (1 << 32) + 9)} == {9}


@pytest.mark.parametrize("kwargs", [{"duration_ms": 8_200}, {"duration_ms": 0},
                                    {"ptime_ms": 0}, {"clock_rate": -1}, {"volume": 64}])
def test_sender_refuses_impossible_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DtmfSender(**kwargs)  # type: ignore[arg-type]


def test_longest_single_segment_event_is_accepted() -> None:
    assert DtmfSender(duration_ms=8_180).duration_ticks == 65_440


def test_sender_refuses_a_non_key() -> None:
    with pytest.raises(ValueError):
        DtmfSender().packets("Z", 0)


def test_plan_packet_becomes_an_rtp_packet() -> None:
    first = DtmfSender().packets("9", 4_000)[0]
    rtp = first.rtp(PT, 77, SSRC)
    assert rtp == RtpPacket(PT, 77, 4_000, SSRC, bytes.fromhex("090a00a0"), marker=True)
    assert RtpPacket.parse(bytes(rtp)) == rtp


# -- masking ---------------------------------------------------------------------------------------
def test_reprs_never_show_the_key() -> None:
    a, b = DtmfSender().packets("1", 0), DtmfSender().packets("9", 0)
    assert [repr(p) for p in a] == [repr(p) for p in b]
    assert repr(TelephoneEvent.from_key("3")) == repr(TelephoneEvent.from_key("#"))
    assert repr(DtmfKey("4", SSRC, 0, 10)) == repr(DtmfKey("8", SSRC, 0, 10))
    assert str(DtmfKey("4", SSRC, 0, 10)) == repr(DtmfKey("4", SSRC, 0, 10))
    assert repr(TelephoneEvent(16)) == "TelephoneEvent(16, vol=10, dur=0)"  # not a key: shown


# -- receiver helpers ------------------------------------------------------------------------------
Arrival = tuple[RtpPacket, int]  # packet, arrival time (ms)


def press(keys: str, start: int = 90_000, gap_ms: int = 200, ssrc: int = SSRC) -> list[Arrival]:
    """The packets of ``keys`` pressed one after another, with their send times."""
    sender, out, seq, time_ms, timestamp = DtmfSender(), [], 1_000, 0, start
    for key in keys:
        for planned in sender.packets(key, timestamp):
            out.append((planned.rtp(PT, seq & 0xFFFF, ssrc), time_ms + planned.offset_ms))
            seq += 1
        time_ms += 120 + gap_ms
        timestamp = (timestamp + sender.duration_ticks + gap_ms * 8) & 0xFFFFFFFF
    return out


def run(receiver: DtmfReceiver, arrivals: list[Arrival], *, settle: bool = True) -> list[DtmfKey]:
    keys: list[DtmfKey] = []
    for packet, at in arrivals:
        keys += receiver.feed(packet, at)
        keys += receiver.poll(at)
    if settle:
        keys += receiver.poll(10**9)
    return keys


def test_each_key_is_reported_once_at_its_first_packet() -> None:
    arrivals = press("1590")
    keys = run(DtmfReceiver(PT), arrivals)
    assert "".join(k.key for k in keys) == "1590"
    assert [k.at_ms for k in keys] == [0, 320, 640, 960]  # the marker packet of each
    assert [k.duration for k in keys] == [160] * 4 and not any(k.ended for k in keys)
    assert len({k.timestamp for k in keys}) == 4


def test_end_mode_reports_at_the_first_end_packet_with_the_duration() -> None:
    keys = run(DtmfReceiver(PT, report_on="end"), press("12"))
    assert [(k.key, k.at_ms, k.duration, k.ended) for k in keys] == [
        ("1", 80, 800, True), ("2", 400, 800, True)]


@pytest.mark.parametrize("mode", MODES)
def test_retransmitted_and_duplicated_packets_report_nothing_new(mode: str) -> None:
    arrivals = press("66")
    doubled = [a for a in arrivals for _ in range(3)]
    assert [k.key for k in run(DtmfReceiver(PT, report_on=mode), doubled)] == ["6", "6"]  # type: ignore[arg-type]


def test_lost_start_packets_delay_the_report_to_the_first_packet_that_arrives() -> None:
    arrivals = press("3")[2:]  # marker packet and first update lost
    [key] = run(DtmfReceiver(PT), arrivals)
    assert (key.key, key.at_ms, key.duration) == ("3", 40, 480)


@pytest.mark.parametrize("mode", MODES)
def test_a_key_heard_only_through_its_end_packets(mode: str) -> None:
    arrivals = press("*")[4:]
    [key] = run(DtmfReceiver(PT, report_on=mode), arrivals)  # type: ignore[arg-type]
    assert (key.key, key.ended, key.duration, key.at_ms) == ("*", True, 800, 80)


def test_timeout_closes_an_event_whose_end_never_came() -> None:
    receiver = DtmfReceiver(PT)
    arrivals = press("8")[:3]  # no END
    assert [k.key for k in run(receiver, arrivals, settle=False)] == ["8"]
    assert receiver.held and receiver.next_deadline() == 40 + 500
    assert receiver.poll(539) == [] and receiver.held
    assert receiver.poll(540) == [] and not receiver.held and receiver.next_deadline() is None
    # A late END after the timeout changes nothing.
    assert run(receiver, press("8")[4:]) == []


def test_end_mode_reports_a_silent_event_at_the_timeout() -> None:
    receiver = DtmfReceiver(PT, report_on="end", timeout_ms=300)
    assert run(receiver, press("4")[:2], settle=False) == []
    assert receiver.next_deadline() == 320
    assert receiver.poll(319) == []
    [key] = receiver.poll(320)
    assert (key.key, key.ended, key.duration, key.at_ms) == ("4", False, 320, 320)
    assert receiver.poll(10_000) == [] and run(receiver, press("4")[4:]) == []


def test_end_mode_reports_an_unended_key_when_the_next_one_begins() -> None:
    arrivals = [a for a in press("25") if not TelephoneEvent.parse(a[0].payload).end]
    keys = run(DtmfReceiver(PT, report_on="end", timeout_ms=10_000), arrivals, settle=False)
    assert [(k.key, k.at_ms, k.ended) for k in keys] == [("2", 320, False)]


@pytest.mark.parametrize("mode", MODES)
def test_a_late_packet_of_an_older_event_is_dropped(mode: str) -> None:
    first, second = press("19")[:7], press("19")[7:]
    keys = run(DtmfReceiver(PT, report_on=mode), second[:1] + first + second[1:])  # type: ignore[arg-type]
    assert [k.key for k in keys] == ["9"]


def test_events_are_ordered_across_the_timestamp_wrap() -> None:
    keys = run(DtmfReceiver(PT), press("123", start=0xFFFFFFFF - 500))
    assert "".join(k.key for k in keys) == "123"
    assert keys[1].timestamp < keys[0].timestamp  # wrapped


def test_ssrcs_are_tracked_separately() -> None:
    receiver = DtmfReceiver(PT)
    a, b = press("1", ssrc=1), press("2", ssrc=2)
    keys = run(receiver, [x for pair in zip(a, b, strict=True) for x in pair])
    assert sorted((k.ssrc, k.key) for k in keys) == [(1, "1"), (2, "2")]


def test_memory_is_bounded_to_a_few_ssrcs() -> None:
    receiver = DtmfReceiver(PT)
    for ssrc in range(100):
        run(receiver, press("0", ssrc=ssrc)[:1], settle=False)
    assert "16 ssrc" in repr(receiver)


def test_other_payload_types_and_non_key_events_are_ignored() -> None:
    receiver = DtmfReceiver(PT)
    assert receiver.feed(RtpPacket(0, 1, 0, SSRC, b"\xff" * 160), 0) == []
    assert receiver.feed(RtpPacket(PT, 2, 0, SSRC, bytes(TelephoneEvent(16, True))), 0) == []
    assert not receiver.held


def test_a_bad_telephone_event_payload_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        DtmfReceiver(PT).feed(RtpPacket(PT, 1, 0, SSRC, b"\x01\x02"), 0)


def test_receiver_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError):
        DtmfReceiver(PT, report_on="middle")  # type: ignore[arg-type]


# -- properties ------------------------------------------------------------------------------------
keys_strategy = st.text(alphabet=DTMF_KEYS, min_size=1, max_size=6)


def sent_events(arrivals: list[Arrival]) -> list[tuple[int, str]]:
    """(timestamp, key) of each press, in sending order."""
    seen: list[tuple[int, str]] = []
    for packet, _ in arrivals:
        event = (packet.timestamp, TelephoneEvent.parse(packet.payload).key or "")
        if event not in seen:
            seen.append(event)
    return seen


def is_subsequence(part: list[tuple[int, str]], whole: list[tuple[int, str]]) -> bool:
    it = iter(whole)
    return all(item in it for item in part)


@settings(max_examples=300)
@given(keys=keys_strategy, start=st.integers(0, 0xFFFFFFFF), mode=st.sampled_from(MODES),
       data=st.data())
def test_any_loss_duplication_or_reordering_reports_keys_at_most_once_in_order(
        keys: str, start: int, mode: str, data: st.DataObject) -> None:
    arrivals = press(keys, start=start)
    # Any multiset of the packets (drops, duplicates), in any order, at increasing times.
    picks = data.draw(st.lists(st.integers(0, len(arrivals) - 1), max_size=3 * len(arrivals)))
    order = data.draw(st.permutations(picks))
    gaps = data.draw(st.lists(st.integers(0, 700), min_size=len(order), max_size=len(order)))
    now, received = 0, []
    for index, gap in zip(order, gaps, strict=True):
        now += gap
        received.append((arrivals[index][0], now))
    reported = [(k.timestamp, k.key) for k in run(DtmfReceiver(PT, report_on=mode), received)]  # type: ignore[arg-type]
    assert len(reported) == len(set(reported))
    assert is_subsequence(reported, sent_events(arrivals))


@settings(max_examples=200)
@given(keys=keys_strategy, start=st.integers(0, 0xFFFFFFFF), mode=st.sampled_from(MODES),
       data=st.data())
def test_without_loss_every_key_is_reported_exactly_once_in_order(
        keys: str, start: int, mode: str, data: st.DataObject) -> None:
    arrivals = press(keys, start=start)
    # Duplicates anywhere, and reordering inside each press's own packets.
    by_press: dict[int, list[Arrival]] = {}
    for arrival in arrivals:
        by_press.setdefault(arrival[0].timestamp, []).append(arrival)
    received: list[Arrival] = []
    for group in by_press.values():
        copies = data.draw(st.lists(st.integers(1, 3), min_size=len(group), max_size=len(group)))
        shuffled = data.draw(st.permutations([a for a, n in zip(group, copies, strict=True)
                                              for _ in range(n)]))
        received += shuffled
    times = [a[1] for a in sorted(received, key=lambda a: a[1])]
    received = [(packet, at) for (packet, _), at in zip(received, times, strict=True)]
    reported = [(k.timestamp, k.key) for k in run(DtmfReceiver(PT, report_on=mode), received)]  # type: ignore[arg-type]
    assert reported == sent_events(arrivals)
    assert "".join(key for _, key in reported) == keys


@given(st.binary(max_size=8), st.integers(0, 127))
def test_receiver_takes_any_payload_or_raises_protocol_error(payload: bytes, pt: int) -> None:
    try:
        DtmfReceiver(PT).feed(RtpPacket(pt, 0, 0, SSRC, payload), 0)
    except ProtocolError:
        assert pt == PT and len(payload) != 4


def test_packets_survive_the_wire() -> None:
    # Through bytes and back, as the transport sees them.
    arrivals = [(RtpPacket.parse(bytes(p)), t) for p, t in press("0#")]
    assert [k.key for k in run(DtmfReceiver(PT), arrivals)] == ["0", "#"]


def test_dtmf_packet_payload_matches_its_event() -> None:
    packet = DtmfPacket(TelephoneEvent.from_key("B", duration=160), True, 3, 0)
    assert packet.payload == bytes([13, 10, 0, 160])
