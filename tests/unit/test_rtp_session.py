"""RTP pacing and receive statistics."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.telephony.rtp.packet import RtpPacket
from ars_engine.telephony.rtp.session import DUPLICATE_WINDOW, RtpReceiver, RtpSender

FRAME = bytes(160)


def test_deadlines_are_absolute_so_a_late_wakeup_does_not_shift_later_packets() -> None:
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    sender.start(100.0)
    due = []
    for late in (0.0, 0.013, 0.0, 0.019, 0.0):
        due.append(sender.next_deadline)
        sender.media(FRAME)  # sent `late` seconds after its deadline: no effect on the next
        assert late >= 0
    assert due == pytest.approx([100.0, 100.02, 100.04, 100.06, 100.08])


def test_sequence_and_timestamp_advance_and_wrap() -> None:
    sender = RtpSender(8, ssrc=7, sequence=0xFFFE, timestamp=0xFFFFFF00)
    sender.start(0.0)
    packets = [sender.media(FRAME) for _ in range(4)]
    assert [p.sequence for p in packets] == [0xFFFE, 0xFFFF, 0, 1]
    assert [p.timestamp for p in packets] == [(0xFFFFFF00 + 160 * i) & 0xFFFFFFFF
                                              for i in range(4)]
    assert [p.marker for p in packets] == [True, False, False, False]
    assert all(p.payload_type == 8 and p.ssrc == 7 for p in packets)


def test_marker_after_a_gap_and_timestamp_keeps_time() -> None:
    sender = RtpSender(0, ssrc=1, sequence=10, timestamp=1000)
    sender.start(0.0)
    first = sender.media(FRAME)
    sender.skip(3)
    after = sender.media(FRAME)
    assert (first.marker, after.marker) == (True, True)
    assert after.sequence == 11, "a gap in time is not a gap in sequence numbers"
    assert after.timestamp == 1000 + 4 * 160
    assert sender.next_deadline == pytest.approx(5 * 0.02)


def test_events_share_the_sequence_space_but_keep_their_start_timestamp() -> None:
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    sender.start(0.0)
    sender.media(FRAME)
    e1 = sender.event(101, b"\x01\x0a\x00\xa0", 160, marker=True)
    e2 = sender.event(101, b"\x01\x0a\x01\x40", 160, marker=False)
    nxt = sender.media(FRAME)
    assert [e1.sequence, e2.sequence, nxt.sequence] == [1, 2, 3]
    assert e1.timestamp == e2.timestamp == 160
    assert nxt.timestamp == 160


def test_start_is_required_before_deadlines() -> None:
    with pytest.raises(RuntimeError):
        _ = RtpSender(0).next_deadline


def stream(n: int, start_seq: int = 100) -> list[RtpPacket]:
    return [RtpPacket(0, (start_seq + i) & 0xFFFF, 160 * i, 42, FRAME) for i in range(n)]


def test_receiver_finds_duplicates_far_behind_across_the_wrap_in_bounded_memory() -> None:
    packets = stream(70_000, start_seq=60_000)  # the sequence number wraps at 65,536
    rx = RtpReceiver()
    for k, packet in enumerate(packets):
        assert rx.feed(packet, 0.02 * k)
    assert not rx.feed(packets[-1000], 0.0)  # 1,000 behind, across the wrap: a duplicate
    assert not rx.feed(packets[-1], 0.0)
    assert rx.stats.duplicates == 2 and rx.stats.received == 70_000
    assert rx._window.bit_length() <= DUPLICATE_WINDOW  # the whole per-stream state


def test_receiver_counts_loss_duplicates_and_reordering() -> None:
    packets = stream(10)
    order = [0, 1, 3, 2, 2, 5, 6, 9]  # 4, 7, 8 lost; 2 late then duplicated
    rx = RtpReceiver()
    kept = [rx.feed(packets[i], 0.02 * k) for k, i in enumerate(order)]
    assert kept == [True, True, True, True, False, True, True, True]
    assert (rx.stats.received, rx.stats.duplicates, rx.stats.reordered) == (7, 1, 1)
    assert rx.stats.lost == 3


def test_jitter_is_zero_for_a_perfect_stream_and_grows_with_late_packets() -> None:
    perfect, late = RtpReceiver(), RtpReceiver(keep_interarrival=True)
    rng = random.Random(1)
    for i, p in enumerate(stream(200)):
        perfect.feed(p, i * 0.02)
        late.feed(p, i * 0.02 + rng.uniform(0, 0.01))
    assert perfect.stats.jitter == pytest.approx(0.0, abs=1e-6)
    assert 10 < late.stats.jitter < 80  # timestamp units: 1.25-10 ms at 8 kHz
    assert len(late.stats.interarrival_ms) == 199


@given(st.sets(st.integers(0, 29), max_size=10), st.booleans())
def test_in_order_stream_with_drops_counts_exactly_the_gaps(dropped: set[int],
                                                             twice: bool) -> None:
    packets = stream(30, start_seq=65530)  # crosses the 16-bit wrap
    delivered = [i for i in range(30) if i not in dropped]
    rx = RtpReceiver()
    for k, i in enumerate(delivered):
        rx.feed(packets[i], 0.02 * k)
        if twice:
            assert rx.feed(packets[i], 0.02 * k) is False
    if not delivered:
        return
    inside = [i for i in dropped if min(delivered) < i < max(delivered)]
    assert rx.stats.received == len(delivered)
    assert rx.stats.lost == len(inside)
    assert rx.stats.duplicates == (len(delivered) if twice else 0)
    assert rx.stats.reordered == 0


@given(st.permutations(list(range(30))))
def test_any_arrival_order_counts_every_packet_once(order: list[int]) -> None:
    packets = stream(30, start_seq=65530)
    rx = RtpReceiver()
    for k, i in enumerate(order):
        assert rx.feed(packets[i], 0.02 * k)
    assert rx.stats.received == 30 and rx.stats.duplicates == 0
    assert rx.stats.lost <= 29
