"""The UAC call core against scripted responses: answer, ACK, BYE, busy, CANCEL, auth, routes."""

from __future__ import annotations

from ars_engine.telephony.outcomes import Outcome
from ars_engine.telephony.sip.call import (
    CallAnswered,
    CallConfig,
    CallEnded,
    CallProgress,
    CallState,
    OutboundCall,
    SendTo,
)
from ars_engine.telephony.sip.digest import verify
from ars_engine.telephony.sip.headers import Via
from ars_engine.telephony.sip.message import SipRequest, SipResponse, parse_message

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
      b"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
PEER = ("127.0.0.1", 5080)


def config(**kw: object) -> CallConfig:
    base: dict[str, object] = {"target": "sip:qa@127.0.0.1:5080", "local_host": "127.0.0.1",
                               "local_port": 5060, "answer_timeout": 30.0}
    base.update(kw)
    return CallConfig(**base)  # type: ignore[arg-type]


def sent(outputs: list[object]) -> list[tuple[SipRequest, tuple[str, int]]]:
    out = []
    for o in outputs:
        if isinstance(o, SendTo):
            msg = parse_message(o.data)
            assert isinstance(msg, SipRequest)
            out.append((msg, o.addr))
    return out


def reply(request: SipRequest, status: int, reason: str = "", *, tag: str | None = "uas1",
          extra: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> SipResponse:
    to = request.get("To") or ""
    if tag and ";tag=" not in to:
        to += f";tag={tag}"
    headers = [("Via", v) for v in request.get_all("Via")]
    headers += [("From", request.get("From") or ""), ("To", to),
                ("Call-ID", request.get("Call-ID") or ""), ("CSeq", request.get("CSeq") or "")]
    headers += list(extra)
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return SipResponse(status, reason or "Reason", tuple(headers), body)


def answered_call(**kw: object) -> tuple[OutboundCall, SipRequest, list[object]]:
    call = OutboundCall(config(**kw), SDP)
    ((invite, addr),) = sent(call.start(0.0))
    assert addr == PEER and invite.method == "INVITE"
    call.receive(reply(invite, 100, tag=None), 0.05)
    assert call.receive(reply(invite, 180), 0.1) == [CallProgress(180, b"")]
    contact = (("Contact", "<sip:qa@127.0.0.1:5090>"),)
    out = call.receive(reply(invite, 200, "OK", extra=contact, body=b"answer-sdp"), 1.0)
    return call, invite, out


def test_invite_carries_offer_via_branch_rport_and_a_from_tag() -> None:
    call = OutboundCall(config(), SDP)
    ((invite, _),) = sent(call.start(0.0))
    via = Via.parse(invite.get("Via") or "")
    assert via.branch and via.branch.startswith("z9hG4bK") and via.has_param("rport")
    assert invite.cseq.seq == 1 and invite.cseq.method == "INVITE"
    assert ";tag=" in (invite.get("From") or "") and ";tag=" not in (invite.get("To") or "")
    assert invite.body == SDP and invite.get("Content-Type") == "application/sdp"


def test_answer_is_acked_at_the_contact_with_a_new_branch() -> None:
    call, invite, out = answered_call()
    ((ack, addr),) = sent(out)
    assert out[-1] == CallAnswered(b"answer-sdp")
    assert call.state is CallState.CONFIRMED
    assert ack.method == "ACK" and ack.uri == "sip:qa@127.0.0.1:5090"
    assert addr == ("127.0.0.1", 5090), "RFC 3261 §13.2.2.4: the ACK goes to the Contact"
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert Via.parse(ack.get("Via") or "").branch != Via.parse(invite.get("Via") or "").branch
    assert "tag=uas1" in (ack.get("To") or "")


def test_retransmitted_2xx_gets_the_same_ack_again() -> None:
    call, invite, out = answered_call()
    again = call.receive(reply(invite, 200, "OK", body=b"answer-sdp"), 1.5)
    assert [o for o in again if isinstance(o, SendTo)] == [out[0]]
    assert not any(isinstance(o, CallAnswered) for o in again)


def test_hangup_sends_bye_in_the_dialog_and_ends_on_its_200() -> None:
    call, _, _ = answered_call()
    ((bye, addr),) = sent(call.hangup(5.0))
    assert bye.method == "BYE" and bye.cseq.seq == 2 and addr == ("127.0.0.1", 5090)
    assert "tag=uas1" in (bye.get("To") or "")
    assert call.receive(reply(bye, 200, "OK"), 5.1) == [
        CallEnded(Outcome.ANSWERED, 200, "hung up", "local")]


def test_bye_from_the_callee_is_answered_200_and_ends_the_call() -> None:
    call, invite, _ = answered_call()
    bye = SipRequest("BYE", "sip:ars@127.0.0.1:5060", (
        ("Via", "SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKpeer1"),
        ("From", "<sip:qa@127.0.0.1:5080>;tag=uas1"), ("To", invite.get("From") or ""),
        ("Call-ID", call.call_id), ("CSeq", "7 BYE")))
    out = call.receive(bye, 9.0, source=("127.0.0.1", 5090))
    assert isinstance(out[0], SendTo) and out[0].addr == ("127.0.0.1", 5090)
    ok = parse_message(out[0].data)
    assert isinstance(ok, SipResponse) and ok.status == 200 and ok.cseq.seq == 7
    assert out[1] == CallEnded(Outcome.ANSWERED, 200, "callee hung up", "remote")


def test_busy_is_acked_by_the_transaction_and_ends_as_busy() -> None:
    call = OutboundCall(config(), SDP)
    ((invite, _),) = sent(call.start(0.0))
    out = call.receive(reply(invite, 486, "Busy Here"), 0.2)
    ((ack, addr),) = sent(out)
    assert ack.method == "ACK" and addr == PEER
    assert ack.get("Via") == invite.get("Via"), "§17.1.1.3: same branch as the INVITE"
    assert ack.cseq.seq == 1 and "tag=uas1" in (ack.get("To") or "")
    assert out[-1] == CallEnded(Outcome.BUSY, 486, "Busy Here", "remote")


def test_ring_timeout_cancels_and_487_ends_as_no_answer() -> None:
    call = OutboundCall(config(answer_timeout=20.0), SDP)
    ((invite, _),) = sent(call.start(0.0))
    call.receive(reply(invite, 180), 0.5)
    assert call.deadline == 20.0
    ((cancel, addr),) = sent(call.on_timer(20.0))
    assert cancel.method == "CANCEL" and addr == PEER
    assert cancel.get("Via") == invite.get("Via") and cancel.cseq.seq == 1
    assert call.receive(reply(cancel, 200, "OK"), 20.1) == []
    out = call.receive(reply(invite, 487, "Request Terminated"), 20.2)
    assert out[-1] == CallEnded(Outcome.NO_ANSWER, 487, "Request Terminated", "remote")


def test_cancel_waits_for_a_provisional_response() -> None:
    call = OutboundCall(config(answer_timeout=1.0), SDP)
    ((invite, _),) = sent(call.start(0.0))
    methods = [m.method for m, _ in sent(call.on_timer(1.0))]
    assert "CANCEL" not in methods, "§9.1: no CANCEL before a provisional response"
    out = call.receive(reply(invite, 180), 1.2)
    assert [m.method for m, _ in sent(out)] == ["CANCEL"]


def test_silence_retransmits_then_timer_b_ends_as_network_error() -> None:
    call = OutboundCall(config(answer_timeout=60.0), SDP)
    call.start(0.0)
    outputs: list[object] = []
    while call.deadline is not None and call.state is not CallState.ENDED:
        outputs += call.on_timer(call.deadline)
    invites = [m for m, _ in sent(outputs) if m.method == "INVITE"]
    assert len(invites) == 6  # Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert outputs[-1] == CallEnded(Outcome.NETWORK_ERROR, None, "no final response (Timer B)",
                                    "network")


def test_401_is_answered_once_with_digest_credentials() -> None:
    call = OutboundCall(config(username="ars", password="s3cret"), SDP)
    ((invite, _),) = sent(call.start(0.0))
    challenge = 'Digest realm="ars", nonce="abc123", qop="auth", algorithm=SHA-256'
    out = call.receive(reply(invite, 401, "Unauthorized",
                             extra=(("WWW-Authenticate", challenge),)), 0.1)
    methods = [(m.method, m.cseq.seq) for m, _ in sent(out)]
    assert methods == [("ACK", 1), ("INVITE", 2)]
    second = sent(out)[1][0]
    assert verify(second.get("Authorization") or "", "INVITE", "s3cret")
    assert "s3cret" not in (second.get("Authorization") or "")
    again = call.receive(reply(second, 401, "Unauthorized",
                               extra=(("WWW-Authenticate", challenge),)), 0.2)
    assert again[-1] == CallEnded(Outcome.REJECTED, 401, "Unauthorized", "remote")


def test_record_route_becomes_the_route_set_in_reverse() -> None:
    call = OutboundCall(config(), SDP)
    ((invite, _),) = sent(call.start(0.0))
    rr = (("Record-Route", "<sip:p1.example:5070;lr>"), ("Record-Route", "<sip:127.0.0.1:5071;lr>"))
    out = call.receive(reply(invite, 200, "OK", extra=(("Contact", "<sip:qa@10.9.9.9>"), *rr)),
                       0.3)
    ((ack, addr),) = sent(out)
    assert ack.get_all("Route") == ["<sip:127.0.0.1:5071;lr>", "<sip:p1.example:5070;lr>"]
    assert addr == ("127.0.0.1", 5071), "loose routing: the first Route gets the request"
    ((bye, _),) = sent(call.hangup(2.0))
    assert bye.get_all("Route") == ack.get_all("Route")


def test_user_cancel_racing_an_answer_acks_then_byes() -> None:
    call = OutboundCall(config(), SDP)
    ((invite, _),) = sent(call.start(0.0))
    call.receive(reply(invite, 180), 0.1)
    assert [m.method for m, _ in sent(call.hangup(0.5))] == ["CANCEL"]
    out = call.receive(reply(invite, 200, "OK", extra=(("Contact", "<sip:qa@127.0.0.1:5080>"),)),
                       0.6)
    assert [m.method for m, _ in sent(out)] == ["ACK", "BYE"]
    bye = sent(out)[1][0]
    assert call.receive(reply(bye, 200, "OK"), 0.7)[-1].outcome is Outcome.CANCELED  # type: ignore[union-attr]


def test_request_outside_the_dialog_gets_481() -> None:
    call, _, _ = answered_call()
    stray = SipRequest("BYE", "sip:ars@127.0.0.1", (
        ("Via", "SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKx"), ("From", "<sip:x@y>;tag=1"),
        ("To", "<sip:ars@127.0.0.1>;tag=nope"), ("Call-ID", "other"), ("CSeq", "1 BYE")))
    ((response,),) = [[o] for o in call.receive(stray, 3.0) if isinstance(o, SendTo)]
    parsed = parse_message(response.data)
    assert isinstance(parsed, SipResponse) and parsed.status == 481
    assert response.addr == ("127.0.0.1", 6000)
    assert call.state is CallState.CONFIRMED
