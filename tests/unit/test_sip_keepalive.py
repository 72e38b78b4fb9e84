"""OPTIONS keepalive: up on any final response, down after Timer F, one probe in flight."""

from __future__ import annotations

import pytest

from ars_engine.telephony.sip.call import SendTo
from ars_engine.telephony.sip.keepalive import TrunkMonitor, TrunkStatus
from ars_engine.telephony.sip.message import SipRequest, SipResponse, parse_message

TRUNK = ("127.0.0.1", 5070)


def options_of(outputs: list[object]) -> list[SipRequest]:
    found = []
    for o in outputs:
        if isinstance(o, SendTo):
            assert o.addr == TRUNK
            msg = parse_message(o.data)
            assert isinstance(msg, SipRequest) and msg.method == "OPTIONS"
            found.append(msg)
    return found


def answer(request: SipRequest, status: int) -> SipResponse:
    headers = tuple((n, request.get(n) or "") for n in ("Via", "From", "To", "Call-ID", "CSeq"))
    return SipResponse(status, "Whatever", headers)


def test_any_final_response_marks_the_trunk_up_once() -> None:
    monitor = TrunkMonitor(TRUNK, "127.0.0.1", 5060, interval=30.0)
    (probe,) = options_of(monitor.start(0.0))
    assert probe.call_id == monitor.call_id and probe.cseq.seq == 1
    assert monitor.receive(answer(probe, 405), 0.05) == [TrunkStatus(True, 405, 50.0)]
    assert monitor.deadline == 30.05
    (again,) = options_of(monitor.on_timer(30.05))
    assert again.cseq.seq == 2
    assert monitor.receive(answer(again, 200), 30.1) == [], "only changes are reported"


def test_silence_marks_the_trunk_down_after_timer_f_then_up_again() -> None:
    monitor = TrunkMonitor(TRUNK, "127.0.0.1", 5060, interval=10.0, t1=0.5)
    options_of(monitor.start(0.0))
    events: list[object] = []
    while monitor.up is None:
        deadline = monitor.deadline
        assert deadline is not None
        events += monitor.on_timer(deadline)
    assert [e for e in events if isinstance(e, TrunkStatus)] == [TrunkStatus(False, None)]
    assert len(options_of([e for e in events if isinstance(e, SendTo)])) >= 5  # Timer E resends
    assert monitor.deadline == 42.0  # Timer F at 32 s, then the next probe 10 s later
    (probe,) = options_of(monitor.on_timer(42.0))
    (status,) = monitor.receive(answer(probe, 200), 42.01)
    assert isinstance(status, TrunkStatus) and (status.up, status.status) == (True, 200)
    assert status.rtt_ms == pytest.approx(10.0)


def test_responses_of_other_transactions_are_ignored() -> None:
    monitor = TrunkMonitor(TRUNK, "127.0.0.1", 5060)
    (probe,) = options_of(monitor.start(0.0))
    stray = SipResponse(200, "OK", (("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother"),
                                    ("Call-ID", monitor.call_id), ("CSeq", "1 OPTIONS")))
    assert monitor.receive(stray, 0.1) == []
    assert monitor.up is None
    assert probe.get("Max-Forwards") == "70"
