"""Re-INVITEs from the peer in an answered call: the call core's UAS side (reinvite.py) and our
SDP side (session_update.py)."""

from __future__ import annotations

import pytest
from test_sip_call import answered_call

from ars_engine.telephony.sip.call import CallState, OutboundCall, SendTo
from ars_engine.telephony.sip.message import SipRequest, SipResponse, parse_message
from ars_engine.telephony.sip.reinvite import ReInvite, ReInviteAcked
from ars_engine.telephony.sip.sdp import (
    NegotiatedMedia,
    SessionDescription,
    make_offer,
    negotiate_answer,
)
from ars_engine.telephony.sip.session_update import SessionUpdater

PEER = ("127.0.0.1", 5090)
T1 = 0.5


def peer_offer(port: int = 4000, codecs: str = "0 8 101", direction: str = "sendrecv",
               version: int = 2) -> bytes:
    maps = {"0": "PCMU/8000", "8": "PCMA/8000", "18": "G729/8000", "101": "telephone-event/8000"}
    lines = [f"a=rtpmap:{pt} {maps[pt]}" for pt in codecs.split()]
    rtpmaps = "\r\n".join(lines)
    return (f"v=0\r\no=peer 7 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP {codecs}\r\n{rtpmaps}\r\na={direction}\r\n"
            ).encode()


def reinvite(call: OutboundCall, cseq: int, body: bytes = b"", branch: str = "z9hG4bKre1",
             method: str = "INVITE") -> SipRequest:
    """A request from the peer inside the call's dialog (From/To swapped)."""
    headers = (
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5090;branch={branch}"),
        ("From", f"<sip:qa@127.0.0.1:5090>;tag={call.to_tag}"),
        ("To", f"<sip:ars@127.0.0.1>;tag={call.from_tag}"),
        ("Call-ID", call.call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", "<sip:qa@127.0.0.1:5090>"),
    ) + ((("Content-Type", "application/sdp"),) if body else ())
    return SipRequest(method, "sip:ars@127.0.0.1:5060", headers, body)


def ack_for(call: OutboundCall, cseq: int, body: bytes = b"") -> SipRequest:
    return reinvite(call, cseq, body, branch="z9hG4bKack1", method="ACK")


def responses(outputs: list[object]) -> list[SipResponse]:
    out = []
    for o in outputs:
        if isinstance(o, SendTo):
            msg = parse_message(o.data)
            if isinstance(msg, SipResponse):
                out.append(msg)
    return out


def confirmed() -> OutboundCall:
    call, _, _ = answered_call()
    assert call.state is CallState.CONFIRMED
    return call


def test_reinvite_is_reported_then_answered_with_200_contact_and_sdp() -> None:
    call = confirmed()
    offer = peer_offer(port=4100)
    assert call.receive(reinvite(call, 10, offer), 2.0, PEER) == [ReInvite(offer)]
    (ok,) = responses(call.answer_reinvite(b"our-sdp", 2.0))
    assert ok.status == 200 and ok.body == b"our-sdp"
    assert ok.get("Contact") == "<sip:ars@127.0.0.1:5060>"
    assert ok.get("Content-Type") == "application/sdp" and ok.cseq.seq == 10
    assert call.state is CallState.CONFIRMED


def test_retransmitted_reinvite_gets_the_same_200() -> None:
    call = confirmed()
    request = reinvite(call, 10, peer_offer())
    call.receive(request, 2.0, PEER)
    first = call.answer_reinvite(b"our-sdp", 2.0)
    again = call.receive(request, 2.3, PEER)
    assert [o.data for o in again if isinstance(o, SendTo)] == \
        [o.data for o in first if isinstance(o, SendTo)]


def test_2xx_is_resent_t1_doubling_until_the_ack() -> None:
    call = confirmed()
    call.receive(reinvite(call, 10, peer_offer()), 2.0, PEER)
    call.answer_reinvite(b"our-sdp", 2.0)
    times = []
    now = 2.0
    while len(times) < 4:
        now = call.deadline
        assert now is not None
        if responses(call.on_timer(now)):
            times.append(round(now - 2.0, 3))
    assert times == [T1, 3 * T1, 7 * T1, 15 * T1]  # 0.5, 1, 2, 4 (= T2) apart
    assert call.receive(ack_for(call, 10), now + 0.1, PEER) == [ReInviteAcked(b"")]
    while (deadline := call.deadline) is not None and deadline <= 2.0 + 64 * T1 + 1:
        assert not responses(call.on_timer(deadline)), "the ACK stopped the resending"


def test_offerless_reinvite_gets_our_offer_and_the_ack_brings_the_answer() -> None:
    call = confirmed()
    assert call.receive(reinvite(call, 10), 2.0, PEER) == [ReInvite(b"")]
    call.answer_reinvite(b"our-offer", 2.0)
    assert call.receive(ack_for(call, 10, b"their-answer"), 2.1, PEER) == \
        [ReInviteAcked(b"their-answer")]


def test_refused_reinvite_gets_488_and_the_call_goes_on() -> None:
    call = confirmed()
    call.receive(reinvite(call, 10, peer_offer(codecs="18")), 2.0, PEER)
    (refusal,) = responses(call.reject_reinvite(2.0))
    assert refusal.status == 488
    assert call.receive(ack_for(call, 10), 2.1, PEER) == []
    assert call.state is CallState.CONFIRMED


def test_a_second_reinvite_before_the_ack_gets_500_with_retry_after() -> None:
    call = confirmed()
    call.receive(reinvite(call, 10, peer_offer()), 2.0, PEER)
    call.answer_reinvite(b"our-sdp", 2.0)
    (busy,) = responses(call.receive(reinvite(call, 11, peer_offer(), branch="z9hG4bKre2"),
                                     2.1, PEER))
    assert busy.status == 500 and 0 <= int(busy.get("Retry-After") or "-1") <= 10
    call.receive(ack_for(call, 10), 2.2, PEER)
    out = call.receive(reinvite(call, 12, peer_offer(), branch="z9hG4bKre3"), 2.3, PEER)
    assert out == [ReInvite(peer_offer())]


def test_request_with_a_lower_cseq_is_out_of_order() -> None:
    call = confirmed()
    call.receive(reinvite(call, 10, peer_offer()), 2.0, PEER)
    call.answer_reinvite(b"our-sdp", 2.0)
    call.receive(ack_for(call, 10), 2.1, PEER)
    (late,) = responses(call.receive(reinvite(call, 9, peer_offer(), branch="z9hG4bKold"),
                                     2.2, PEER))
    assert late.status == 500


def test_unacknowledged_2xx_ends_the_call_with_bye() -> None:
    call = confirmed()
    call.receive(reinvite(call, 10, peer_offer()), 2.0, PEER)
    call.answer_reinvite(b"our-sdp", 2.0)
    methods: list[str] = []
    while call.state is CallState.CONFIRMED:
        now = call.deadline
        assert now is not None and now <= 2.0 + 64 * T1 + 1e-6
        for o in call.on_timer(now):
            if isinstance(o, SendTo):
                msg = parse_message(o.data)
                if isinstance(msg, SipRequest):
                    methods.append(msg.method)
    assert call.state is CallState.TERMINATING and methods == ["BYE"]


def test_reinvite_crossing_our_bye_gets_481() -> None:
    call = confirmed()
    call.hangup(2.0)
    (gone,) = responses(call.receive(reinvite(call, 10, peer_offer()), 2.1, PEER))
    assert gone.status == 481


# -- our SDP side ------------------------------------------------------------------------------
def updater() -> tuple[SessionUpdater, list[NegotiatedMedia], SessionDescription]:
    ours = make_offer("127.0.0.1", 30000, 4242, 1, codecs=("PCMU", "PCMA"))
    first = negotiate_answer(ours, SessionDescription.parse(peer_offer(version=1)))
    applied: list[NegotiatedMedia] = []
    return SessionUpdater(ours, first, applied.append), applied, ours


def origin_version(sdp: bytes) -> int:
    origin = SessionDescription.parse(sdp).origin
    assert origin is not None
    return int(origin.session_version)


def test_session_refresh_keeps_our_version_and_moves_nothing() -> None:
    update, applied, _ = updater()
    # Our first answer names one codec where our initial offer listed two: it changed (v2).
    answer = update(peer_offer(version=1), False)
    assert answer is not None and origin_version(answer) == 2
    assert applied[-1].remote_port == 4000 and applied[-1].codec == "PCMU"
    again = update(peer_offer(version=1), False)
    assert again == answer  # RFC 3264 §8: unchanged, same version


def test_moved_media_is_applied_and_our_description_is_unchanged() -> None:
    update, applied, _ = updater()
    first = update(peer_offer(version=2), False)
    answer = update(peer_offer(port=4200, version=3), False)
    assert answer is not None and answer == first  # only the peer's side moved
    assert applied[-1].remote_port == 4200
    described = SessionDescription.parse(answer)
    assert described.media[0].port == 30000


def test_a_codec_change_bumps_our_version() -> None:
    update, applied, _ = updater()
    first = update(peer_offer(version=2), False)
    answer = update(peer_offer(codecs="8 101", version=3), False)
    assert answer is not None and origin_version(answer) == origin_version(first or b"") + 1
    assert applied[-1].codec == "PCMA" and applied[-1].payload_type == 8


def test_hold_is_answered_recvonly() -> None:
    update, applied, _ = updater()
    answer = update(peer_offer(direction="sendonly", version=2), False)
    assert answer is not None and b"a=recvonly" in answer
    assert applied[-1].direction == "recvonly"


def test_no_common_codec_refuses_and_keeps_the_session() -> None:
    update, applied, _ = updater()
    assert update(peer_offer(codecs="18", version=2), False) is None
    assert applied == []


def test_offerless_reinvite_then_the_acks_answer() -> None:
    update, applied, _ = updater()
    offer = update(b"", False)
    assert offer is not None and b"m=audio 30000" in offer and origin_version(offer) == 1
    assert update(peer_offer(port=4300, codecs="0 101", version=3), True) is None
    assert applied[-1].remote_port == 4300


@pytest.mark.parametrize("garbage", [b"v=0\r\nbroken", b"not sdp at all"])
def test_a_broken_offer_raises_protocol_error(garbage: bytes) -> None:
    from ars_engine.errors import ProtocolError

    update, _, _ = updater()
    with pytest.raises(ProtocolError):
        update(garbage, False)
