"""SIP client transactions: retransmission schedules, ACK of non-2xx finals, timers."""

from __future__ import annotations

from itertools import pairwise

from ars_engine.telephony.sip.transaction import (
    Final,
    InviteClientTransaction,
    NonInviteClientTransaction,
    Provisional,
    Send,
    Timeout,
    TxState,
)

INVITE = b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\r\n"
ACK = b"ACK sip:bob@127.0.0.1 SIP/2.0\r\n\r\n"


def drive(tx: InviteClientTransaction | NonInviteClientTransaction,
          until: float) -> list[tuple[float, object]]:
    """Run the transaction's timers up to ``until``; return (time, output) pairs."""
    seen: list[tuple[float, object]] = []
    while tx.deadline is not None and tx.deadline <= until:
        now = tx.deadline
        seen.extend((now, out) for out in tx.on_timer(now))
    return seen


def test_invite_is_retransmitted_with_doubling_timer_a_until_timer_b() -> None:
    tx = InviteClientTransaction(INVITE, lambda r: ACK)
    assert tx.start(0.0) == [Send(INVITE)]
    events = drive(tx, 100.0)
    sends = [t for t, out in events if isinstance(out, Send)]
    # RFC 3261 §17.1.1.2: T1, 2·T1, 4·T1… after the first send, until 64·T1 = 32 s.
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert events[-1] == (32.0, Timeout())
    assert tx.state is TxState.TERMINATED and tx.deadline is None


def test_provisional_response_stops_retransmissions_and_timer_b() -> None:
    tx = InviteClientTransaction(INVITE, lambda r: ACK)
    tx.start(0.0)
    drive(tx, 0.6)
    assert tx.receive("180", 180, 0.7) == [Provisional("180", 180)]
    assert tx.state is TxState.PROCEEDING
    assert tx.deadline is None, "ringing may last longer than timer B: the TU times it"
    assert tx.receive("183", 183, 5.0) == [Provisional("183", 183)]


def test_non_2xx_final_is_acked_by_the_transaction_and_reacked_on_retransmission() -> None:
    built: list[object] = []

    def make_ack(response: object) -> bytes:
        built.append(response)
        return ACK

    tx = InviteClientTransaction(INVITE, make_ack)
    tx.start(0.0)
    tx.receive("180", 180, 0.1)
    assert tx.receive("486", 486, 1.0) == [Send(ACK), Final("486", 486)]
    assert built == ["486"]
    assert tx.state is TxState.COMPLETED
    # §17.1.1.2: a retransmitted final gets the ACK again
    assert tx.receive("486", 486, 1.5) == [Send(ACK)]
    assert built == ["486"], "the same ACK is resent, not rebuilt"
    assert drive(tx, 40.0) == []
    assert tx.state is TxState.TERMINATED  # timer D (32 s) ran out


def test_2xx_goes_to_accepted_and_retransmitted_2xx_reach_the_tu_until_timer_m() -> None:
    tx = InviteClientTransaction(INVITE, lambda r: ACK)
    tx.start(0.0)
    assert tx.receive("200", 200, 0.2) == [Final("200", 200)]
    assert tx.state is TxState.ACCEPTED
    assert tx.receive("200", 200, 0.7) == [Final("200", 200)], "RFC 6026: the TU re-ACKs"
    assert tx.receive("180", 180, 0.8) == []
    drive(tx, 40.0)
    assert tx.state is TxState.TERMINATED
    assert tx.receive("200", 200, 41.0) == []


def test_final_without_provisional_stops_retransmission() -> None:
    tx = InviteClientTransaction(INVITE, lambda r: ACK)
    tx.start(0.0)
    tx.receive("503", 503, 0.1)
    assert [o for _, o in drive(tx, 40.0) if isinstance(o, Send)] == []


def test_non_invite_retransmits_up_to_t2_then_times_out_at_timer_f() -> None:
    tx = NonInviteClientTransaction(b"BYE")
    tx.start(0.0)
    events = drive(tx, 100.0)
    sends = [t for t, out in events if isinstance(out, Send)]
    # §17.1.2.2: E doubles from T1 to at most T2 = 4 s; F = 64·T1 = 32 s.
    assert sends[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a == 4.0 for a, b in pairwise(sends[3:]))
    assert events[-1] == (32.0, Timeout())


def test_non_invite_in_proceeding_resends_every_t2_and_final_completes() -> None:
    tx = NonInviteClientTransaction(b"BYE")
    tx.start(0.0)
    assert tx.receive("100", 100, 0.1) == [Provisional("100", 100)]
    sends = [t for t, o in drive(tx, 5.0) if isinstance(o, Send)]
    assert sends == [0.5, 4.5]
    assert tx.receive("200", 200, 5.0) == [Final("200", 200)]
    assert tx.receive("200", 200, 5.1) == [], "retransmitted finals are absorbed"
    assert drive(tx, 20.0) == []
    assert tx.state is TxState.TERMINATED  # timer K
