"""The engine's UAC (call.py) against the softphone's UAS (uas.py), back to back with no network
(tests/unit/sip_pair.py), and the UAS core alone against hand-made requests."""

from __future__ import annotations

import ast
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_pair import ENGINE, OFFER, PHONE, CallPair, engine_config, first, phone_config

from ars_engine.telephony.outcomes import Outcome
from ars_engine.telephony.sip import call as uac
from ars_engine.telephony.sip import uas
from ars_engine.telephony.sip.call import CallState, SendTo
from ars_engine.telephony.sip.digest import authorization, parse_challenge
from ars_engine.telephony.sip.headers import NameAddr, Via
from ars_engine.telephony.sip.message import SipRequest, SipResponse, parse_message
from ars_engine.telephony.sip.sdp import SessionDescription, negotiate_answer
from ars_engine.telephony.sip.uas import (
    CallCanceled,
    CallConfirmed,
    IncomingCall,
    IncomingProgress,
    UasState,
)

T1 = 0.5
CREDENTIALS = {"username": "ars", "password": "s3cret"}


def answered_pair(**kw: Any) -> CallPair:
    """A pair whose softphone rings at once and answers after 1 s."""
    pair = CallPair(**kw)
    pair.on("offered", 0.0, "phone", "ring")
    pair.on("offered", 1.0, "phone", "answer")
    return pair


def ended(pair: CallPair, side: str) -> object:
    """The one end event of a side (CallEnded, or CallCanceled for the softphone)."""
    kinds = (uac.CallEnded,) if side == "engine" else (uas.CallEnded, CallCanceled)
    (event,) = [e for e in pair.events(side) if isinstance(e, kinds)]
    return event


# -- answered calls ----------------------------------------------------------------------------
def test_answered_call_gives_each_side_the_others_sdp() -> None:
    pair = answered_pair()
    pair.run()
    (answered,) = pair.events("engine", uac.CallAnswered)
    (confirmed,) = pair.events("phone", CallConfirmed)
    ok = pair.sent(lambda d: d.is_response(200))[0].message
    assert answered.sdp == ok.body and answered.sdp
    media = negotiate_answer(SessionDescription.parse(OFFER), SessionDescription.parse(ok.body))
    assert (media.codec, media.remote_port, media.dtmf_payload_type) == ("PCMU", 40000, 101)
    assert confirmed.remote_sdp == OFFER
    assert confirmed.negotiated is not None
    assert (confirmed.negotiated.codec, confirmed.negotiated.remote_port) == ("PCMU", 4000)
    assert [repr(d).split(": ")[1] for d in pair.wire] == [
        "INVITE", "100 (INVITE)", "180 (INVITE)", "200 (INVITE)", "ACK"]
    assert pair.engine.state is CallState.CONFIRMED and pair.phone is not None
    assert pair.phone.state is UasState.CONFIRMED and pair.quiet


def test_ring_then_answer_after_three_seconds_of_virtual_time() -> None:
    pair = CallPair()
    pair.on("offered", 0.0, "phone", "ring")
    pair.on("offered", 3.0, "phone", "answer")
    pair.run()
    assert pair.time_of("engine", uac.CallProgress) == 0.0
    assert pair.events("engine", uac.CallProgress) == [uac.CallProgress(180, b"")]
    assert pair.time_of("engine", uac.CallAnswered) == 3.0
    assert pair.time_of("phone", CallConfirmed) == 3.0
    ringing = pair.sent(lambda d: d.is_response(180))[0].message
    ok = pair.sent(lambda d: d.is_response(200))[0].message
    assert NameAddr.parse(ringing.get("To") or "").tag == NameAddr.parse(ok.get("To") or "").tag
    assert ok.get("Contact") == f"<sip:qa@{PHONE[0]}:{PHONE[1]}>"


def test_engine_hangs_up_with_bye() -> None:
    pair = answered_pair()
    pair.on("answered", 5.0, "engine", "hangup")
    pair.run()
    assert ended(pair, "engine") == uac.CallEnded(Outcome.ANSWERED, 200, "hung up", "local")
    assert ended(pair, "phone") == uas.CallEnded("caller hung up", "remote")
    assert pair.engine.state is CallState.ENDED and pair.phone and pair.phone.finished


def test_softphone_hangs_up_with_bye_in_the_dialog() -> None:
    pair = answered_pair()
    pair.on("confirmed", 5.0, "phone", "hangup")
    pair.run()
    (bye,) = [d.message for d in pair.sent(lambda d: d.is_request("BYE"))]
    assert bye.uri == "sip:ars@127.0.0.1:5060", "§12.1.1: the caller's Contact"
    assert bye.cseq.seq == 1, "the UAS's own CSeq counter, not the caller's"
    assert NameAddr.parse(bye.get("To") or "").tag == pair.engine.from_tag
    assert NameAddr.parse(bye.get("From") or "").tag == pair.engine.to_tag
    assert ended(pair, "engine") == uac.CallEnded(Outcome.ANSWERED, 200, "callee hung up",
                                                  "remote")
    assert ended(pair, "phone") == uas.CallEnded("hung up", "local")


# -- calls that are not answered ---------------------------------------------------------------
@pytest.mark.parametrize(("status", "outcome"), [(486, Outcome.BUSY), (603, Outcome.REJECTED),
                                                 (480, Outcome.NO_ANSWER)])
def test_rejection_maps_to_the_engine_outcome_and_is_acked(status: int,
                                                           outcome: Outcome) -> None:
    pair = CallPair()
    pair.on("offered", 0.0, "phone", "ring")
    pair.on("offered", 2.0, "phone", "reject", status=status)
    pair.run()
    engine_end = ended(pair, "engine")
    assert isinstance(engine_end, uac.CallEnded)
    assert (engine_end.outcome, engine_end.status) == (outcome, status)
    assert ended(pair, "phone") == uas.CallEnded(f"rejected with {status}", "local", status)
    assert len(pair.sent(lambda d: d.is_response(status))) == 1, "the ACK stopped Timer G"
    assert len(pair.sent(lambda d: d.is_request("ACK"))) == 1
    assert pair.quiet


def test_never_answered_rings_until_the_engine_cancels() -> None:
    pair = CallPair(engine_config(answer_timeout=10.0))
    pair.on("offered", 0.0, "phone", "ring")
    pair.run()
    (cancel,) = pair.sent(lambda d: d.is_request("CANCEL"))
    assert cancel.time == 10.0
    assert pair.sent(lambda d: d.is_response(200, "CANCEL"))
    assert len(pair.sent(lambda d: d.is_response(487))) == 1
    assert ended(pair, "engine") == uac.CallEnded(Outcome.NO_ANSWER, 487, "Request Terminated",
                                                  "remote")
    assert ended(pair, "phone") == CallCanceled()
    assert pair.quiet


def test_answer_crossing_the_engines_cancel_is_acked_then_byed() -> None:
    pair = CallPair()
    pair.on("offered", 0.0, "phone", "ring")
    pair.at(2.0, "engine", "hangup")  # CANCEL …
    pair.at(2.0, "phone", "answer")  # … and 200 OK at the same instant: they cross
    pair.run()
    methods = [repr(d).split(": ")[1] for d in pair.wire]
    assert methods[3:] == ["CANCEL", "200 (INVITE)", "200 (CANCEL)", "ACK", "BYE", "200 (BYE)"]
    assert len(pair.sent(lambda d: d.is_response(487))) == 0, "§9.2: the CANCEL came too late"
    assert ended(pair, "engine") == uac.CallEnded(Outcome.CANCELED, 200, "hung up", "local")
    assert ended(pair, "phone") == uas.CallEnded("caller hung up", "remote")


def test_never_answered_without_ringing_is_canceled_after_100_trying() -> None:
    # RFC 3261 §9.1: the CANCEL may go once any provisional response, 100 included, arrived.
    pair = CallPair(engine_config(answer_timeout=10.0))
    pair.run(until=200.0)
    assert pair.sent(lambda d: d.is_request("CANCEL"))
    assert ended(pair, "engine") == uac.CallEnded(Outcome.NO_ANSWER, 487, "Request Terminated",
                                                  "remote")
    assert ended(pair, "phone") == CallCanceled()


def test_engine_gives_up_64_t1_after_its_cancel_when_no_487_comes() -> None:
    pair = CallPair(engine_config(answer_timeout=10.0), drop=lambda d: d.is_response(487))
    pair.on("offered", 0.0, "phone", "ring")
    pair.run(until=200.0)
    engine_end = ended(pair, "engine")
    assert isinstance(engine_end, uac.CallEnded)
    assert (engine_end.outcome, engine_end.status) == (Outcome.NO_ANSWER, None)
    assert pair.time_of("engine", uac.CallEnded) <= 10.0 + 64 * T1


# -- digest challenge --------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_challenge_then_the_retried_invite_is_answered(algorithm: str) -> None:
    pair = answered_pair(call_config=engine_config(**CREDENTIALS),
                         phone_config=phone_config(realm="qa", algorithm=algorithm,
                                                   **CREDENTIALS))
    pair.run()
    wire = [repr(d).split(": ")[1] for d in pair.wire]
    assert wire == ["INVITE", "401 (INVITE)", "ACK", "INVITE", "100 (INVITE)", "180 (INVITE)",
                    "200 (INVITE)", "ACK"]
    second = pair.wire[3].message
    assert second.cseq.seq == 2 and second.get("Authorization")
    assert pair.events("phone", IncomingProgress) == [IncomingProgress("challenged", 401),
                                                      IncomingProgress("offered", 100)]
    assert pair.events("engine", uac.CallAnswered) and pair.events("phone", CallConfirmed)


def test_wrong_password_gets_403_and_the_engine_ends_rejected() -> None:
    pair = answered_pair(call_config=engine_config(username="ars", password="wrong"),
                         phone_config=phone_config(realm="qa", **CREDENTIALS))
    pair.run()
    assert ended(pair, "engine") == uac.CallEnded(Outcome.REJECTED, 403, "Forbidden", "remote")
    assert ended(pair, "phone") == uas.CallEnded("wrong credentials", "local", 403)
    assert not pair.events("phone", CallConfirmed) and pair.quiet


def test_engine_without_credentials_ends_rejected_and_the_softphone_stops_waiting() -> None:
    pair = answered_pair(phone_config=phone_config(realm="qa", **CREDENTIALS))
    pair.run()
    assert ended(pair, "engine") == uac.CallEnded(Outcome.REJECTED, 401, "Unauthorized", "remote")
    phone_end = ended(pair, "phone")
    assert isinstance(phone_end, uas.CallEnded) and phone_end.by == "remote"
    assert pair.time_of("phone", uas.CallEnded) == 128 * T1, "Timer H of the 401 + Timer B"


def test_a_lost_ack_to_the_401_is_sent_again_for_the_retransmitted_401() -> None:
    pair = answered_pair(call_config=engine_config(**CREDENTIALS),
                         phone_config=phone_config(realm="qa", **CREDENTIALS),
                         drop=first(lambda d: d.is_request("ACK")))
    pair.run()
    assert pair.events("phone", CallConfirmed)
    assert len(pair.sent(lambda d: d.is_response(401))) == 2, "the second 401 is ACKed"


# -- losses and duplicates ---------------------------------------------------------------------
def test_a_lost_200_is_retransmitted_and_acked() -> None:
    pair = answered_pair(drop=first(lambda d: d.is_response(200)))
    pair.run()
    oks = pair.sent(lambda d: d.is_response(200))
    assert [d.dropped for d in oks] == [True, False]
    assert oks[1].time - oks[0].time == T1, "Timer G starts at T1"
    assert len(pair.events("engine", uac.CallAnswered)) == 1
    assert pair.events("phone", CallConfirmed) and pair.quiet


def test_a_lost_ack_brings_the_200_again_and_the_engine_acks_again() -> None:
    pair = answered_pair(drop=first(lambda d: d.is_request("ACK")))
    pair.run()
    assert len(pair.sent(lambda d: d.is_response(200))) == 2
    acks = pair.sent(lambda d: d.is_request("ACK"))
    assert [d.dropped for d in acks] == [True, False]
    assert bytes(acks[0].message) == bytes(acks[1].message), "§13.2.2.4: the same ACK again"
    assert pair.time_of("phone", CallConfirmed) == 1.0 + T1
    assert len(pair.events("engine", uac.CallAnswered)) == 1


def test_no_ack_at_all_ends_after_timer_h_with_a_bye() -> None:
    pair = answered_pair(drop=lambda d: d.is_request("ACK"))
    pair.run()
    oks = pair.sent(lambda d: d.is_response(200))
    assert [round(d.time - 1.0, 2) for d in oks] == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5,
                                                     23.5, 27.5, 31.5]
    assert ended(pair, "phone") == uas.CallEnded("no ACK", "network")
    assert pair.time_of("phone", uas.CallEnded) == 1.0 + 64 * T1
    assert ended(pair, "engine") == uac.CallEnded(Outcome.ANSWERED, 200, "callee hung up",
                                                  "remote")


@pytest.mark.parametrize("side", ["engine", "phone"])
def test_a_lost_bye_is_retransmitted(side: str) -> None:
    pair = answered_pair(drop=first(lambda d: d.is_request("BYE")))
    if side == "engine":
        pair.on("answered", 5.0, "engine", "hangup")
    else:
        pair.on("confirmed", 5.0, "phone", "hangup")
    pair.run()
    byes = pair.sent(lambda d: d.is_request("BYE"))
    assert [d.sender for d in byes] == [side, side] and byes[1].time - byes[0].time == T1
    assert bytes(byes[0].message) == bytes(byes[1].message)
    assert ended(pair, "engine").outcome is Outcome.ANSWERED  # type: ignore[attr-defined]
    assert isinstance(ended(pair, "phone"), uas.CallEnded) and pair.quiet


def test_every_datagram_twice_changes_nothing() -> None:
    pair = answered_pair(call_config=engine_config(**CREDENTIALS),
                         phone_config=phone_config(realm="qa", **CREDENTIALS),
                         duplicate=lambda d: True)
    pair.on("confirmed", 2.0, "phone", "hangup")
    pair.run()
    assert len(pair.events("engine", uac.CallAnswered)) == 1
    assert len(pair.events("phone", CallConfirmed)) == 1
    assert ended(pair, "engine").outcome is Outcome.ANSWERED  # type: ignore[attr-defined]
    assert ended(pair, "phone") == uas.CallEnded("hung up", "local") and pair.quiet


# -- random loss -------------------------------------------------------------------------------
# The invariant. Loss: each datagram is dropped with probability `loss` ≤ 0.3 and delivered
# twice with probability ≤ 0.1, decided by random.Random(seed). After the pair runs out of work
# (no datagram in flight, no action pending, no timer running on either side):
#   1. nothing raised, every datagram parsed, and the last datagram went out within BOUND
#      (3·64·T1) of the last action either side was told to take (or of the engine's ring
#      timeout): every retransmission chain ends within its timers;
#   2. each side reported at most one end event, and the engine is CONFIRMED or ENDED (never
#      left calling, early or terminating);
#   3. if a side gave up on a retransmission timer (engine: Timer B, by="network", or Timer F
#      of its BYE; softphone: Timer H of its 2xx, "no ACK" by="network", or Timer F of its BYE;
#      each needs the same message lost 6+ times in a row) the sides may disagree, but the
#      softphone is absent (every INVITE lost) only if the engine hit Timer B, and is CONFIRMED
#      or ENDED, or still offered (proceeding/early: a UAS has no ring limit) only if the
#      engine hit Timer B;
#   4. otherwise the two sides agree, by the softphone's behaviour:
#        answer  → the engine reported CallAnswered once and the softphone CallConfirmed once
#                  (or never, if every ACK was lost before the engine's BYE came: a BYE ends an
#                  answered call whose ACK is missing, §15.1.2); nobody hangs up: both
#                  CONFIRMED, no end event; one side hangs up: the engine's CallEnded is
#                  ANSWERED and `by` is "local" on the side that hung up, "remote" on the other;
#        busy    → engine CallEnded(BUSY, 486, by=remote), softphone CallEnded(status 486, local);
#        decline → engine CallEnded(REJECTED, 603, remote), softphone CallEnded(status 603, local);
#        never   → engine CallEnded(NO_ANSWER, 487, remote), softphone CallCanceled;
#      and with a challenge the softphone reported "challenged" then "offered".
BOUND = 3 * 64 * T1
EXPECTED = {"busy": (Outcome.BUSY, 486), "decline": (Outcome.REJECTED, 603),
            "never": (Outcome.NO_ANSWER, 487)}


def run_lossy_call(seed: int, loss: float, duplication: float, behaviour: str, challenge: bool,
                   ring: bool, delay: float, hangup_by: str, hold: float) -> CallPair:
    rng = random.Random(seed)
    creds = CREDENTIALS if challenge else {}
    pair = CallPair(engine_config(answer_timeout=10.0 if behaviour == "never" else 60.0, **creds),
                    phone_config(realm="qa" if challenge else None, **creds),
                    drop=lambda d: rng.random() < loss,
                    duplicate=lambda d: rng.random() < duplication)
    if ring:
        pair.on("offered", 0.0, "phone", "ring")
    action = {"answer": ("answer", {}), "busy": ("reject", {"status": 486}),
              "decline": ("reject", {"status": 603})}.get(behaviour)
    if action is not None:
        pair.on("offered", delay, "phone", action[0], **action[1])
    if behaviour == "answer" and hangup_by == "engine":
        pair.on("answered", hold, "engine", "hangup")
    elif behaviour == "answer" and hangup_by == "phone":
        pair.on("confirmed", hold, "phone", "hangup")
    pair.run(until=1000.0)
    assert pair.quiet, f"still busy at {pair.now}: {pair.wire[-8:]}"
    assert max(d.time for d in pair.wire) <= max(pair.last_action, 10.0) + BOUND
    check_consistency(pair, behaviour, challenge, hangup_by)
    return pair


def check_consistency(pair: CallPair, behaviour: str, challenge: bool, hangup_by: str) -> None:
    assert pair.engine.state in (CallState.CONFIRMED, CallState.ENDED), pair.wire
    engine_ends = pair.events("engine", uac.CallEnded)
    phone_ends = pair.events("phone", uas.CallEnded) + pair.events("phone", CallCanceled)
    assert len(engine_ends) <= 1 and len(phone_ends) <= 1
    phone = pair.phone
    # Giving up on a timer shows as by="network" (Timer B, Timer H "no ACK") or a BYE timeout.
    timer_b = any(e.by == "network" for e in engine_ends)
    if any(e.by == "network" or e.reason == "BYE timed out"
           for e in engine_ends + pair.events("phone", uas.CallEnded)):
        settled = {UasState.CONFIRMED, UasState.ENDED}
        if timer_b:
            settled |= {UasState.PROCEEDING, UasState.EARLY}
        assert (phone is None and timer_b) or (phone is not None and phone.state in settled)
        return
    assert phone is not None
    if challenge:
        assert pair.events("phone", IncomingProgress)[:2] == [
            IncomingProgress("challenged", 401), IncomingProgress("offered", 100)]
    if behaviour == "answer":
        assert len(pair.events("engine", uac.CallAnswered)) == 1
        confirmed = len(pair.events("phone", CallConfirmed))
        assert confirmed == 1 or (confirmed == 0 and phone_ends == [
            uas.CallEnded("caller hung up", "remote")]), "no ACK came before the caller's BYE"
        if hangup_by == "nobody":
            assert not engine_ends and not phone_ends
            assert pair.engine.state is CallState.CONFIRMED
            assert phone.state is UasState.CONFIRMED
            return
        (engine_end,), (phone_end,) = engine_ends, phone_ends
        assert engine_end.outcome is Outcome.ANSWERED
        assert isinstance(phone_end, uas.CallEnded)
        expected_by = ("local", "remote") if hangup_by == "engine" else ("remote", "local")
        assert (engine_end.by, phone_end.by) == expected_by
        return
    assert not pair.events("engine", uac.CallAnswered)
    assert not pair.events("phone", CallConfirmed)
    outcome, status = EXPECTED[behaviour]
    (engine_end,), (phone_end,) = engine_ends, phone_ends
    assert (engine_end.outcome, engine_end.status, engine_end.by) == (outcome, status, "remote")
    if behaviour == "never":
        assert phone_end == CallCanceled()
    else:
        assert isinstance(phone_end, uas.CallEnded)
        assert (phone_end.status, phone_end.by) == (status, "local")


LOSSY = {"seed": st.integers(0, 2**32 - 1), "loss": st.floats(0.0, 0.3),
         "duplication": st.floats(0.0, 0.1), "challenge": st.booleans(),
         "delay": st.floats(0.0, 8.0), "hangup_by": st.sampled_from(["engine", "phone", "nobody"]),
         "hold": st.floats(0.0, 10.0)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviour=st.sampled_from(["answer", "busy", "decline"]), ring=st.booleans(), **LOSSY)
def test_random_loss_never_crashes_and_both_sides_agree(**kw: object) -> None:
    run_lossy_call(**kw)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(**LOSSY)
def test_random_loss_on_a_call_nobody_answers(**kw: object) -> None:
    run_lossy_call(behaviour="never", ring=True, **kw)  # type: ignore[arg-type]


def test_the_never_answered_case_holds_without_loss() -> None:
    run_lossy_call(1, 0.0, 0.0, "never", True, True, 0.0, "nobody", 0.0)


# -- the UAS core alone -------------------------------------------------------------------------

def invite(branch: str = "z9hG4bKinv1", cseq: int = 1, *, auth: str | None = None,
           body: bytes = OFFER, record_route: tuple[str, ...] = ()) -> SipRequest:
    headers = [("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport"),
               *(("Record-Route", r) for r in record_route),
               ("From", "<sip:ars@127.0.0.1>;tag=eng1"), ("To", "<sip:qa@127.0.0.1:5080>"),
               ("Call-ID", "call-1@127.0.0.1"), ("CSeq", f"{cseq} INVITE"),
               ("Contact", "<sip:ars@127.0.0.1:5060>"), ("Content-Type", "application/sdp")]
    if auth:
        headers.append(("Authorization", auth))
    return SipRequest("INVITE", "sip:qa@127.0.0.1:5080", tuple(headers), body)


def request(method: str, call: IncomingCall, *, branch: str = "z9hG4bKreq1", cseq: int = 2,
            to_tag: str | None = "ours", call_id: str = "call-1@127.0.0.1") -> SipRequest:
    tag = call.local_tag if to_tag == "ours" else to_tag
    to = "<sip:qa@127.0.0.1:5080>" + (f";tag={tag}" if tag else "")
    return SipRequest(method, "sip:qa@127.0.0.1:5080", (
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport"),
        ("From", "<sip:ars@127.0.0.1>;tag=eng1"), ("To", to), ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}")))


def responses(outputs: Sequence[object]) -> list[SipResponse]:
    found = [parse_message(o.data) for o in outputs if isinstance(o, SendTo)]
    assert all(isinstance(m, SipResponse) for m in found)
    return found  # type: ignore[return-value]


def statuses(outputs: Sequence[object]) -> list[int]:
    return [r.status for r in responses(outputs)]


def new_call(**kw: object) -> IncomingCall:
    call = IncomingCall(invite(), ENGINE, phone_config(**kw))
    return call


def test_start_sends_100_trying_at_once_without_a_to_tag() -> None:
    call = new_call()
    out = call.start(0.0)
    ((trying,), progress) = responses(out), out[1]
    assert trying.status == 100 and ";tag=" not in (trying.get("To") or "")
    assert trying.get("Via") == invite().get("Via") and progress == IncomingProgress("offered", 100)
    assert out[0].addr == ENGINE and call.state is UasState.PROCEEDING  # type: ignore[union-attr]


def test_retransmitted_invite_gets_the_same_response_again() -> None:
    call = new_call()
    first_out = call.start(0.0)
    assert call.receive(invite(), 0.5) == first_out[:1]
    ring = call.ring(1.0)
    assert call.receive(invite(), 1.5) == ring, "§17.2.1: the latest provisional"
    final = call.reject(2.0, 486)
    assert call.receive(invite(), 2.1)[0] == final[0], "…and the final once sent"


def test_timer_g_resends_a_rejection_until_the_ack() -> None:
    call = new_call()
    call.start(0.0)
    call.reject(0.0, 603)
    assert call.deadline == T1
    assert statuses(call.on_timer(0.5)) == [603]
    assert call.deadline == 1.5, "Timer G doubles"
    ack = request("ACK", call, branch="z9hG4bKinv1", cseq=1)
    assert call.receive(ack, 1.0) == []
    assert call.deadline is None and call.finished


def test_timer_h_without_ack_ends_the_answered_call_with_a_bye() -> None:
    call = new_call()
    call.start(0.0)
    call.answer(0.0)
    resent: list[float] = []
    out: list[uas.Output] = []
    while call.state is UasState.ANSWERED and call.deadline is not None:
        now = call.deadline
        out = call.on_timer(now)
        if any(isinstance(o, SendTo) and o.data.startswith(b"SIP/2.0 200 ") for o in out):
            resent.append(now)
    assert resent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert uas.CallEnded("no ACK", "network") in out
    (bye,) = [parse_message(o.data) for o in out if isinstance(o, SendTo)]
    assert isinstance(bye, SipRequest) and bye.method == "BYE", "§13.3.1.4"


def test_cancel_before_the_answer_gets_200_and_the_invite_487() -> None:
    call = new_call()
    call.start(0.0)
    call.ring(0.1)
    out = call.receive(request("CANCEL", call, branch="z9hG4bKinv1", cseq=1, to_tag=None), 1.0)
    cancel_ok, terminated = responses(out)
    assert (cancel_ok.status, cancel_ok.cseq.method) == (200, "CANCEL")
    assert (terminated.status, terminated.cseq.method) == (487, "INVITE")
    assert out[-1] == CallCanceled() and call.state is UasState.ENDED
    assert call.answer(1.1) == [], "too late to answer"


def test_cancel_after_the_answer_only_gets_200() -> None:
    call = new_call()
    call.start(0.0)
    call.answer(0.5)
    out = call.receive(request("CANCEL", call, branch="z9hG4bKinv1", cseq=1, to_tag=None), 0.6)
    assert statuses(out) == [200] and call.state is UasState.ANSWERED


def test_cancel_of_an_unknown_transaction_gets_481() -> None:
    call = new_call()
    call.start(0.0)
    out = call.receive(request("CANCEL", call, branch="z9hG4bKother", cseq=1, to_tag=None), 0.6)
    assert statuses(out) == [481] and call.state is UasState.PROCEEDING


def test_options_is_answered_200_with_allow() -> None:
    call = new_call()
    call.start(0.0)
    (ok,) = responses(call.receive(request("OPTIONS", call, to_tag=None), 1.0))
    assert ok.status == 200 and "INVITE" in (ok.get("Allow") or "")


@pytest.mark.parametrize(("to_tag", "call_id"), [("nope", "call-1@127.0.0.1"),
                                                 ("ours", "other-call")])
def test_request_outside_the_dialog_gets_481(to_tag: str, call_id: str) -> None:
    call = new_call()
    call.start(0.0)
    call.answer(0.0)
    call.receive(request("ACK", call, cseq=1), 0.1)
    out = call.receive(request("BYE", call, to_tag=to_tag, call_id=call_id), 1.0)
    assert statuses(out) == [481] and call.state is UasState.CONFIRMED


def test_bye_while_ringing_ends_the_early_dialog_with_487() -> None:
    call = new_call()
    call.start(0.0)
    call.ring(0.0)
    out = call.receive(request("BYE", call), 1.0)
    assert [(r.status, r.cseq.method) for r in responses(out)] == [(200, "BYE"), (487, "INVITE")]
    assert out[-1] == CallCanceled()


def test_unknown_method_in_the_dialog_gets_405_with_allow() -> None:
    call = new_call()
    call.start(0.0)
    call.answer(0.0)
    (refused,) = responses(call.receive(request("INFO", call), 0.5))
    assert refused.status == 405 and refused.get("Allow")


def test_re_invite_in_the_dialog_is_refused_488() -> None:
    call = new_call()
    call.start(0.0)
    call.answer(0.0)
    call.receive(request("ACK", call, cseq=1), 0.1)
    out = call.receive(request("INVITE", call, branch="z9hG4bKre", cseq=2), 1.0)
    assert statuses(out) == [488] and call.state is UasState.CONFIRMED


def test_hangup_before_the_ack_waits_for_it_then_byes() -> None:
    routes = ("<sip:p1.example:5070;lr>", "<sip:127.0.0.1:5071;lr>")
    call = IncomingCall(invite(record_route=routes), ENGINE, phone_config())
    call.start(0.0)
    ok = responses(call.answer(0.0))[0]
    assert ok.get_all("Record-Route") == ["<sip:p1.example:5070;lr>", "<sip:127.0.0.1:5071;lr>"]
    assert call.hangup(0.2) == [], "§15: no BYE before the ACK"
    out = call.receive(request("ACK", call, cseq=1), 0.3)
    assert isinstance(out[0], CallConfirmed)
    (bye_out,) = [o for o in out if isinstance(o, SendTo)]
    bye = parse_message(bye_out.data)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert bye.uri == "sip:ars@127.0.0.1:5060"
    assert bye.get_all("Route") == ["<sip:p1.example:5070;lr>", "<sip:127.0.0.1:5071;lr>"], \
        "§12.1.1: the UAS keeps the Record-Route order"
    assert bye_out.addr == ("p1.example", 5070), "loose routing: the first Route"
    assert Via.parse(bye.get("Via") or "").has_param("rport") and bye.cseq.seq == 1


def test_no_common_codec_gets_488() -> None:
    g729 = OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 18").replace(
        b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n", b"a=rtpmap:18 G729/8000\r\n")
    call = IncomingCall(invite(body=g729), ENGINE, phone_config())
    call.start(0.0)
    out = call.answer(1.0)
    assert statuses(out) == [488] and isinstance(out[-1], uas.CallEnded)


def test_an_offerless_invite_is_answered_with_the_offer_given_and_the_ack_has_the_answer() -> None:
    call = IncomingCall(invite(body=b""), ENGINE, phone_config())
    call.start(0.0)
    assert statuses(call.answer(0.5)) == [488], "nothing to answer, and no offer given"
    call = IncomingCall(invite(body=b""), ENGINE, phone_config())
    call.start(0.0)
    (ok,) = responses(call.answer(0.5, OFFER))  # §13.2.1: our offer goes in the 2xx
    assert ok.body == OFFER and ok.get("Content-Type") == "application/sdp"
    ack = request("ACK", call, cseq=1)
    ack = SipRequest("ACK", ack.uri, (*ack.headers, ("Content-Type", "application/sdp")), b"answer")
    assert call.receive(ack, 0.6) == [CallConfirmed(b"answer", None)]


def test_challenge_verifies_realm_nonce_and_digest() -> None:
    call = new_call(realm="qa", **CREDENTIALS)
    (challenge_response,) = responses(call.start(0.0))
    assert challenge_response.status == 401 and call.state is UasState.CHALLENGED
    challenge = parse_challenge(challenge_response.get("WWW-Authenticate") or "")
    good = authorization(challenge, "INVITE", "sip:qa@127.0.0.1:5080", "ars", "s3cret",
                         cnonce="c1")
    out = call.receive(invite("z9hG4bKinv2", 2, auth=good), 0.1)
    assert statuses(out) == [100] and call.state is UasState.PROCEEDING
    other = new_call(realm="qa", **CREDENTIALS)
    other.start(0.0)
    out = other.receive(invite("z9hG4bKinv2", 2, auth=good), 0.1)  # another call's nonce
    assert statuses(out) == [403] and other.state is UasState.ENDED


def test_config_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(phone_config(realm="qa", **CREDENTIALS))


def test_uas_core_imports_no_io() -> None:
    tree = ast.parse(Path(uas.__file__).read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    assert not names & {"asyncio", "socket", "selectors", "ssl", "time", "threading"}
