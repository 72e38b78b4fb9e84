"""outcome_from_originate: the table, and every Originate in the recorded Asterisk 22 transcripts
run through the AMI core and decided from its OriginateResponse and its channel's Hangup."""

from __future__ import annotations

from pathlib import Path

import pytest

from ars_engine.telephony.ami import (
    Action,
    AmiConnection,
    Event,
    Hangup,
    OriginateResponse,
    Received,
    Response,
    typed,
)
from ars_engine.telephony.outcomes import (
    ORIGINATE_REASON_OUTCOMES,
    Outcome,
    outcome_from_originate,
)

ANSWERED, BUSY, NO_ANSWER, REJECTED = (Outcome.ANSWERED, Outcome.BUSY, Outcome.NO_ANSWER,
                                       Outcome.REJECTED)
UNREACHABLE, NETWORK_ERROR, CANCELED, FAILED = (Outcome.UNREACHABLE, Outcome.NETWORK_ERROR,
                                                Outcome.CANCELED, Outcome.FAILED)
TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "asterisk"

# (success, reason, cause, canceled) → outcome
TABLE = [
    # seen in the transcripts
    ((True, 4, 16, False), ANSWERED),  # Local answered, callee hung up (ami_main_local_originate)
    ((True, 4, 0, False), ANSWERED),  # AGI hung up: cause 0 (…_local_agi_hangup, …_sipp_answer)
    ((False, 0, 17, False), BUSY),  # PJSIP 486: Reason 0, cause 17 (…_pjsip_sipp_busy)
    ((False, 0, 18, False), NO_ANSWER),  # Timer B: Reason 0, cause 18 (…_unreachable_timerb)
    ((False, 3, 19, False), NO_ANSWER),  # ring timeout (…_pjsip_unreachable, Local no answer)
    ((False, 5, 0, False), BUSY),  # Local Busy(): the originated ;1 half has cause 0
    ((False, 0, None, False), FAILED),  # unknown technology Nope/foo: no channel, no Hangup
    ((False, None, None, False), FAILED),  # sync Originate refused: Response: Error
    # the cause wins when it says something, else the reason
    ((False, 5, 16, False), BUSY),  # 16 on a failed call says nothing
    ((False, 3, 17, False), BUSY),
    ((False, 0, 21, False), REJECTED),
    ((False, 0, 1, False), UNREACHABLE),
    ((False, 0, 34, False), NETWORK_ERROR),
    ((False, 1, None, False), NO_ANSWER),
    ((False, 2, None, False), NO_ANSWER),
    ((False, 8, None, False), NETWORK_ERROR),
    ((False, 4, None, False), FAILED),  # Failure with "answer": contradictory, not trusted
    ((False, 99, None, False), FAILED),
    # no OriginateResponse (AMI lost)
    ((None, None, None, False), NETWORK_ERROR),
    ((None, None, 16, False), NETWORK_ERROR),
    ((None, None, 17, False), BUSY),
    # canceled by us: CANCELED unless the far end had refused for good
    ((True, 4, 16, True), CANCELED),
    ((False, 3, 19, True), CANCELED),
    ((False, 0, None, True), CANCELED),
    ((False, 0, 17, True), BUSY),
    ((False, 0, 21, True), REJECTED),
    ((False, 0, 1, True), UNREACHABLE),
]


@pytest.mark.parametrize(("args", "outcome"), TABLE, ids=[str(a) for a, _ in TABLE])
def test_outcome_from_originate(args: tuple[bool | None, int | None, int | None, bool],
                                outcome: Outcome) -> None:
    success, reason, cause, canceled = args
    assert outcome_from_originate(success, reason, cause, canceled=canceled) is outcome


def test_every_reason_row_is_used_on_failure_without_cause() -> None:
    for reason, outcome in ORIGINATE_REASON_OUTCOMES.items():
        if reason != 4:  # 4 comes with Success
            assert outcome_from_originate(False, reason, None) is outcome


# -- the recorded Originates -----------------------------------------------------------------------
EXPECTED = {  # (transcript, Originate ActionID) → outcome
    ("ami_main_local_originate", "orig-local-1"): ANSWERED,
    ("ami_originate_local_agi_hangup", "orig-local-2"): ANSWERED,
    ("ami_originate_local_noanswer_busy", "orig-noans"): NO_ANSWER,
    ("ami_originate_local_noanswer_busy", "orig-busy"): BUSY,
    ("ami_originate_local_noanswer_busy", "orig-badtech"): FAILED,
    ("ami_originate_local_noanswer_busy", "orig-sync-badtech"): FAILED,
    ("ami_originate_pjsip_sipp_answer", "orig-pjsip-ok"): ANSWERED,
    ("ami_originate_pjsip_sipp_busy", "orig-pjsip-busy"): BUSY,
    ("ami_originate_pjsip_unreachable", "orig-pjsip-fail"): NO_ANSWER,
    ("ami_originate_pjsip_unreachable_timerb", "orig-pjsip-timerb"): NO_ANSWER,
}


def originates(name: str) -> list[tuple[Action, Outcome]]:
    """Each Originate sent in transcript ``name``, with the outcome decided from the replay."""
    tx = (TRANSCRIPTS / f"{name}.tx.bin").read_bytes()
    actions = [Action.parse(block) for block in tx[:-4].split(b"\r\n\r\n")]
    conn = AmiConnection()
    for action in actions:
        conn.send(action)
    received: list[Received] = conn.receive_data((TRANSCRIPTS / f"{name}.rx.bin").read_bytes())
    typed_events = [typed(x) for x in received if isinstance(x, Event)]
    results = []
    for action in actions:
        if action.name != "Originate" or action.get("Channel") is None:
            continue  # ami_main_local_originate also sends one without Channel: refused at once
        if action.get("Async") != "true":  # a synchronous Originate: its Response decides
            (response,) = [x for x in received if isinstance(x, Response)
                           and x.action_id == action.action_id]
            results.append((action, outcome_from_originate(response.success, None, None)))
            continue
        (answer,) = [x for x in typed_events if isinstance(x, OriginateResponse)
                     and x.action_id == action.action_id]
        # The channel the Originate created has the Uniqueid it pre-assigned (ChannelId);
        # a Local channel's ;2 half has OtherChannelId or "<ChannelId>;2" and is not it.
        hangups = [x for x in typed_events if isinstance(x, Hangup)
                   and x.uniqueid == action.get("ChannelId")]
        assert len(hangups) <= 1
        cause = hangups[0].cause if hangups else None
        results.append((action, outcome_from_originate(answer.success, answer.reason, cause)))
    return results


@pytest.mark.parametrize("name", sorted({name for name, _ in EXPECTED}))
def test_recorded_originates_get_their_outcome(name: str) -> None:
    decided = {action.action_id: outcome for action, outcome in originates(name)}
    assert decided == {action_id: outcome for (n, action_id), outcome in EXPECTED.items()
                       if n == name}


def test_every_originate_transcript_is_in_the_table() -> None:
    names = {path.name.removesuffix(".tx.bin") for path in TRANSCRIPTS.glob("ami_*.tx.bin")}
    with_originate = {n for n in names if b"Action: Originate" in
                      (TRANSCRIPTS / f"{n}.tx.bin").read_bytes()}
    assert with_originate == {name for name, _ in EXPECTED}
