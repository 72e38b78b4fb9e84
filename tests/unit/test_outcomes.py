"""Outcome mapping: every row of the SIP status and Q.850 cause tables, and the cancel rules."""

from __future__ import annotations

import pytest

from ars_engine.telephony.outcomes import (
    Q850_OUTCOMES,
    SIP_STATUS_OUTCOMES,
    Outcome,
    outcome_from_q850,
    outcome_from_sip_status,
)

ANSWERED, BUSY, NO_ANSWER, REJECTED = (Outcome.ANSWERED, Outcome.BUSY, Outcome.NO_ANSWER,
                                       Outcome.REJECTED)
UNREACHABLE, NETWORK_ERROR, CANCELED, FAILED = (Outcome.UNREACHABLE, Outcome.NETWORK_ERROR,
                                                Outcome.CANCELED, Outcome.FAILED)

# status → outcome with neither flag: one row per named status, plus class fallbacks.
SIP_TABLE = [
    (200, ANSWERED), (202, ANSWERED), (299, ANSWERED),
    (300, FAILED), (301, FAILED), (302, FAILED), (380, FAILED),
    (400, FAILED), (401, REJECTED), (402, REJECTED), (403, REJECTED), (404, UNREACHABLE),
    (405, FAILED), (406, FAILED), (407, REJECTED), (408, NO_ANSWER), (410, UNREACHABLE),
    (413, FAILED), (414, FAILED), (415, FAILED), (416, FAILED), (420, FAILED), (421, FAILED),
    (423, FAILED), (480, NO_ANSWER), (481, FAILED), (482, NETWORK_ERROR),
    (483, NETWORK_ERROR), (484, UNREACHABLE), (485, UNREACHABLE), (486, BUSY),
    (487, NO_ANSWER), (488, FAILED), (491, FAILED), (493, FAILED),
    (500, NETWORK_ERROR), (501, FAILED), (502, NETWORK_ERROR), (503, NETWORK_ERROR),
    (504, NETWORK_ERROR), (505, FAILED), (513, FAILED), (580, FAILED),
    (600, BUSY), (603, REJECTED), (604, UNREACHABLE), (606, FAILED), (607, REJECTED),
    (608, REJECTED),
    # Unknown statuses: the x00 of their class (RFC 3261 §8.1.3.2), 6xx kept FAILED.
    (409, FAILED), (422, FAILED), (499, FAILED), (599, NETWORK_ERROR), (555, NETWORK_ERROR),
    (699, FAILED),
]


@pytest.mark.parametrize(("status", "outcome"), SIP_TABLE, ids=[str(s) for s, _ in SIP_TABLE])
def test_sip_status(status: int, outcome: Outcome) -> None:
    assert outcome_from_sip_status(status) is outcome


def test_every_named_sip_status_is_in_the_table_test() -> None:
    tested = {status for status, _ in SIP_TABLE}
    assert set(SIP_STATUS_OUTCOMES) <= tested
    assert all(outcome_from_sip_status(s) is o for s, o in SIP_STATUS_OUTCOMES.items())


# (status, timed_out, canceled) → outcome: the cases the flags change, and some they do not.
FLAG_TABLE = [
    (None, False, False, NETWORK_ERROR),  # Timer B: not even a provisional response
    (None, True, False, NO_ANSWER),  # ring timeout, CANCEL sent, its 487 never came
    (None, False, True, CANCELED),  # canceled, no final response
    (487, True, False, NO_ANSWER),  # our ring timeout: the person did not pick up
    (487, False, True, CANCELED),  # the call was canceled on request
    (487, False, False, NO_ANSWER),  # a proxy's own ring limit
    (487, True, True, CANCELED),  # both: the explicit cancel wins
    (200, True, False, ANSWERED),  # picked up as we gave up: the call goes on
    (200, False, True, CANCELED),  # picked up as we canceled: ACK then BYE
    (486, False, True, BUSY),  # the busy came before our CANCEL took effect
    (486, True, False, BUSY),
    (480, True, False, NO_ANSWER),
    (503, False, True, NETWORK_ERROR),
    (603, True, False, REJECTED),
]


@pytest.mark.parametrize(("status", "timed_out", "canceled", "outcome"), FLAG_TABLE)
def test_sip_status_with_our_cancel(status: int | None, timed_out: bool, canceled: bool,
                                    outcome: Outcome) -> None:
    assert outcome_from_sip_status(status, timed_out=timed_out, canceled=canceled) is outcome


@pytest.mark.parametrize("status", [0, 100, 180, 183, 199, 700, 999, -1])
def test_non_final_status_is_a_caller_bug(status: int) -> None:
    with pytest.raises(ValueError):
        outcome_from_sip_status(status)


Q850_TABLE = [
    (1, UNREACHABLE), (2, UNREACHABLE), (3, UNREACHABLE),
    (16, ANSWERED), (17, BUSY), (18, NO_ANSWER), (19, NO_ANSWER), (20, NO_ANSWER),
    (21, REJECTED), (22, UNREACHABLE), (27, NETWORK_ERROR), (28, UNREACHABLE), (29, FAILED),
    (31, NO_ANSWER), (34, NETWORK_ERROR), (38, NETWORK_ERROR), (41, NETWORK_ERROR),
    (42, NETWORK_ERROR), (44, NETWORK_ERROR), (47, NETWORK_ERROR),
    (50, REJECTED), (52, REJECTED), (53, REJECTED), (54, REJECTED), (55, REJECTED),
    (57, REJECTED), (58, FAILED), (65, FAILED), (88, FAILED), (102, NETWORK_ERROR),
    (111, FAILED), (127, FAILED),
    # Not in the table: FAILED.
    (0, FAILED), (4, FAILED), (26, FAILED), (66, FAILED), (100, FAILED), (128, FAILED),
    (-1, FAILED),
]


@pytest.mark.parametrize(("cause", "outcome"), Q850_TABLE, ids=[str(c) for c, _ in Q850_TABLE])
def test_q850_cause(cause: int, outcome: Outcome) -> None:
    assert outcome_from_q850(cause) is outcome


def test_every_q850_row_is_in_the_table_test() -> None:
    assert set(Q850_OUTCOMES) <= {cause for cause, _ in Q850_TABLE}


def test_both_backends_agree_on_the_statuses_asterisk_translates() -> None:
    # Asterisk chan_pjsip hangup_sip2cause: SIP status → the cause our Asterisk backend sees.
    # Where the two tables meet, a call must get the same outcome through either backend.
    asterisk = {404: 1, 408: 18, 410: 22, 480: 19, 484: 28, 485: 1, 486: 17, 500: 38, 502: 27,
                503: 34, 504: 102, 600: 17, 603: 21, 604: 1, 401: 21, 403: 21, 407: 21, 488: 58,
                606: 58, 405: 127, 481: 127, 501: 29}
    for status, cause in asterisk.items():
        assert outcome_from_sip_status(status) is outcome_from_q850(cause), status


def test_outcome_values_are_the_api_strings() -> None:
    assert [o.value for o in Outcome] == ["answered", "busy", "no_answer", "rejected",
                                          "unreachable", "network_error", "canceled", "failed"]
