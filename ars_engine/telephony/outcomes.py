"""How a call attempt ended, from SIP final statuses (embedded backend) or Q.850 causes
(Asterisk backend): pure functions, one table each, every row commented.

The outcomes say what the caller can do next: ``BUSY`` and ``NO_ANSWER`` may be retried later
(the person exists and may pick up), ``UNREACHABLE`` (the number does not exist) and
``REJECTED`` (refused by the person or the network) must not be, ``NETWORK_ERROR`` is ours or the
carrier's trouble (retry on another route or later), ``CANCELED`` we stopped it, ``FAILED``
anything else (often a configuration or interop problem: look at the logs).

Sources: RFC 3261 §21 (status meanings, and §8.1.3.2: an unknown status is treated as the x00 of
its class), RFC 3398 §7.2.4 (ISUP cause ↔ SIP status, which carriers' gateways follow), and
Asterisk's chan_pjsip ``hangup_sip2cause`` (what the Asterisk backend sees for each status).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["Q850_OUTCOMES", "SIP_STATUS_OUTCOMES", "Outcome", "outcome_from_q850",
           "outcome_from_sip_status"]


class Outcome(enum.Enum):
    """How a call attempt ended."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    NETWORK_ERROR = "network_error"
    CANCELED = "canceled"
    FAILED = "failed"


# Final statuses with their own row; others fall back to their class (below).
SIP_STATUS_OUTCOMES: dict[int, Outcome] = {
    400: Outcome.FAILED,  # Bad Request: our request was malformed (interop bug)
    # 401/407 reach us only once the UA has already answered a challenge: the trunk refused our
    # credentials (Asterisk: both → cause 21 call rejected). Fix the config; no retry.
    401: Outcome.REJECTED,
    402: Outcome.REJECTED,  # Payment Required: the carrier account is out of credit
    403: Outcome.REJECTED,  # Forbidden: destination or caller barred (also spam-blocked CLIs)
    404: Outcome.UNREACHABLE,  # Not Found: unallocated number (RFC 3398: cause 1 → 404)
    405: Outcome.FAILED,  # Method Not Allowed: the peer does not take INVITE (a misrouted trunk)
    406: Outcome.FAILED,  # Not Acceptable
    407: Outcome.REJECTED,  # Proxy Authentication Required after our credentials: as 401
    408: Outcome.NO_ANSWER,  # Request Timeout: the far end stopped ringing (cause 18 → 408)
    410: Outcome.UNREACHABLE,  # Gone: the number was disconnected or changed (cause 22 → 410)
    # 413 too large, 414 URI too long, 415 media type, 416 URI scheme, 420 bad extension,
    # 421 extension required, 423 interval too brief: our request's form, an interop bug
    413: Outcome.FAILED,
    414: Outcome.FAILED,
    415: Outcome.FAILED,
    416: Outcome.FAILED,
    420: Outcome.FAILED,
    421: Outcome.FAILED,
    423: Outcome.FAILED,
    # Temporarily Unavailable: phone off, out of coverage, or no answer (cause 19/20 → 480);
    # the person may be reachable later.
    480: Outcome.NO_ANSWER,
    481: Outcome.FAILED,  # Call/Transaction Does Not Exist: a protocol mix-up
    482: Outcome.NETWORK_ERROR,  # Loop Detected: a routing problem in the network
    483: Outcome.NETWORK_ERROR,  # Too Many Hops: as 482
    484: Outcome.UNREACHABLE,  # Address Incomplete: number too short/malformed (cause 28 → 484)
    485: Outcome.UNREACHABLE,  # Ambiguous: the number does not identify one subscriber
    486: Outcome.BUSY,  # Busy Here
    # 487 Request Terminated: decided by who canceled, in outcome_from_sip_status; in this table
    # the case nobody on our side canceled: a proxy's ring limit cut the attempt short.
    487: Outcome.NO_ANSWER,
    488: Outcome.FAILED,  # Not Acceptable Here: no common codec (our media config)
    491: Outcome.FAILED,  # Request Pending: glare on a re-INVITE, not an initial call
    493: Outcome.FAILED,  # Undecipherable (S/MIME)
    500: Outcome.NETWORK_ERROR,  # Server Internal Error (cause 38/127 gateways)
    501: Outcome.FAILED,  # Not Implemented: the peer does not do what we asked
    502: Outcome.NETWORK_ERROR,  # Bad Gateway: the next hop failed (cause 27 → 502)
    503: Outcome.NETWORK_ERROR,  # Service Unavailable: congestion (causes 34/38/41/42 → 503)
    504: Outcome.NETWORK_ERROR,  # Server Time-out: a downstream timer expired (cause 102 → 504)
    505: Outcome.FAILED,  # Version Not Supported
    513: Outcome.FAILED,  # Message Too Large: our INVITE was too big for UDP somewhere
    580: Outcome.FAILED,  # Precondition Failure
    600: Outcome.BUSY,  # Busy Everywhere
    603: Outcome.REJECTED,  # Decline: the person (or their device) refused the call
    604: Outcome.UNREACHABLE,  # Does Not Exist Anywhere
    606: Outcome.FAILED,  # Not Acceptable (globally): no usable media
    607: Outcome.REJECTED,  # Unwanted (RFC 8197): the person marked the call unwanted
    608: Outcome.REJECTED,  # Rejected (RFC 8688): an intermediary's call analytics blocked it
}
# RFC 3261 §8.1.3.2: an unknown status is treated as the x00 of its class: 300 (we follow no
# redirect), 400, 500 as above. Not for 6xx: 600 would be BUSY and invite a retry, while an
# unknown 6xx is a global refusal; FAILED.
_CLASS_OUTCOMES = {2: Outcome.ANSWERED, 3: Outcome.FAILED, 4: Outcome.FAILED,
                   5: Outcome.NETWORK_ERROR, 6: Outcome.FAILED}


def outcome_from_sip_status(status: int | None, *, timed_out: bool = False,
                            canceled: bool = False) -> Outcome:
    """The outcome of an INVITE from its final status.

    ``status`` is the final response (200-699), or None if none came: Timer B fired
    (RFC 3261 §17.1.1.2, no response within 64×T1) or the transport failed. ``timed_out``: our
    ring timeout expired and we sent CANCEL. ``canceled``: we sent CANCEL because the call was
    canceled (API or shutdown). They change three cases:

    * 487 Request Terminated answers our CANCEL: NO_ANSWER after a ring timeout, CANCELED after
      a cancel (and NO_ANSWER if we sent no CANCEL: a proxy's ring limit).
    * no final response: NETWORK_ERROR, unless we had canceled (NO_ANSWER / CANCELED: the
      CANCEL's 487 got lost, the person was ringing).
    * 2xx: ANSWERED, even after a ring timeout (the person picked up as we gave up: the UA ACKs
      and runs the call); CANCELED after a cancel (the UA ACKs and hangs up at once).

    Any other final status says what happened before our CANCEL took effect: its own row.
    """
    if status is None:
        if canceled:
            return Outcome.CANCELED
        return Outcome.NO_ANSWER if timed_out else Outcome.NETWORK_ERROR
    if not 200 <= status <= 699:
        raise ValueError(f"{status} is not a final SIP status (200-699)")
    if status < 300:
        return Outcome.CANCELED if canceled else Outcome.ANSWERED
    if status == 487:
        return Outcome.CANCELED if canceled else Outcome.NO_ANSWER
    return SIP_STATUS_OUTCOMES.get(status, _CLASS_OUTCOMES[status // 100])


# Q.850 cause values (Asterisk's AMI "Cause", HANGUPCAUSE) → outcome. Unlisted causes: FAILED.
Q850_OUTCOMES: dict[int, Outcome] = {
    1: Outcome.UNREACHABLE,  # unallocated (unassigned) number
    2: Outcome.UNREACHABLE,  # no route to specified transit network (RFC 3398 → 404)
    3: Outcome.UNREACHABLE,  # no route to destination (Asterisk also maps SIP 420 here)
    # normal clearing: the call was answered and hung up normally. The Asterisk backend takes
    # the answer from the Originate response; a 16 on a call that never answered is classified
    # by that response, not here.
    16: Outcome.ANSWERED,
    17: Outcome.BUSY,  # user busy (SIP 486/600)
    18: Outcome.NO_ANSWER,  # no user responding (SIP 408)
    19: Outcome.NO_ANSWER,  # no answer from user, user alerted (SIP 480; chan_pjsip: also 483)
    20: Outcome.NO_ANSWER,  # subscriber absent: phone off, out of coverage; retry later (SIP 480)
    # call rejected: the person declined (SIP 603) — or, through chan_pjsip, the trunk refused
    # our credentials or caller (401/403/407): both are REJECTED, neither is retried.
    21: Outcome.REJECTED,
    22: Outcome.UNREACHABLE,  # number changed (SIP 410)
    27: Outcome.NETWORK_ERROR,  # destination out of order (SIP 502)
    28: Outcome.UNREACHABLE,  # invalid number format, incomplete number (SIP 484)
    29: Outcome.FAILED,  # facility rejected (SIP 501)
    31: Outcome.NO_ANSWER,  # normal, unspecified: RFC 3398 maps it to 480 Temporarily Unavailable
    34: Outcome.NETWORK_ERROR,  # no circuit/channel available (SIP 503)
    38: Outcome.NETWORK_ERROR,  # network out of order (SIP 500/503)
    41: Outcome.NETWORK_ERROR,  # temporary failure (SIP 503; chan_pjsip 409)
    42: Outcome.NETWORK_ERROR,  # switching equipment congestion (SIP 503)
    44: Outcome.NETWORK_ERROR,  # requested circuit/channel not available
    47: Outcome.NETWORK_ERROR,  # resource unavailable, unspecified (SIP 503)
    50: Outcome.REJECTED,  # requested facility not subscribed
    52: Outcome.REJECTED,  # outgoing calls barred
    53: Outcome.REJECTED,  # outgoing calls barred within CUG
    54: Outcome.REJECTED,  # incoming calls barred
    55: Outcome.REJECTED,  # incoming calls barred within CUG (SIP 403)
    57: Outcome.REJECTED,  # bearer capability not authorized (SIP 403)
    58: Outcome.FAILED,  # bearer capability not available (chan_pjsip: 488, no common codec)
    65: Outcome.FAILED,  # bearer capability not implemented (SIP 488)
    88: Outcome.FAILED,  # incompatible destination
    102: Outcome.NETWORK_ERROR,  # recovery on timer expiry (SIP 504)
    111: Outcome.FAILED,  # protocol error, unspecified
    127: Outcome.FAILED,  # interworking (chan_pjsip: 405, 481, 482, 487, unknown 4xx and 6xx)
}


def outcome_from_q850(cause: int) -> Outcome:
    """The outcome of a call from its Q.850 cause (the Asterisk backend's hangup cause).

    Cancellation is not a cause: the backend knows when it canceled and says so itself.
    Unknown causes (0 "not defined" included) are FAILED.
    """
    return Q850_OUTCOMES.get(cause, Outcome.FAILED)


# Async Originate's OriginateResponse ``Reason`` (Asterisk's last control frame while dialing,
# AST_CONTROL_*) → outcome, used when no Hangup cause says more (see outcome_from_originate).
# Rows are commented with the tests/transcripts/asterisk/ami_* recordings that show them.
ORIGINATE_REASON_OUTCOMES: dict[int, Outcome] = {
    # 0: no control frame. Unknown technology `Nope/foo`: Failure, Reason 0, no channel and no
    # Hangup at all (ami_originate_local_noanswer_busy). PJSIP 486 and Timer B also give
    # Reason 0 (ami_originate_pjsip_sipp_busy, …_unreachable_timerb) but with a Hangup cause.
    0: Outcome.FAILED,
    # 1 hangup: the channel went away before answering without a cause saying why (not seen
    # in the recordings); like an attempt nobody took, it may be retried.
    1: Outcome.NO_ANSWER,
    2: Outcome.NO_ANSWER,  # ring (not ringing): the far end was being alerted; not seen
    # 3 ringing when Originate's Timeout expired: Local ringing with Timeout 5000 (cause 19,
    # ami_originate_local_noanswer_busy) and PJSIP with nobody at the address, Timeout 30000
    # (cause 19 "User alerting, no answer", TechCause 480, ami_originate_pjsip_unreachable).
    3: Outcome.NO_ANSWER,
    # 4 answer: comes with Response: Success (ami_main_local_originate, …_local_agi_hangup,
    # …_pjsip_sipp_answer), which outcome_from_originate handles before this table.
    4: Outcome.ANSWERED,
    # 5 busy: Local Busy() gives Reason 5 while the Hangup of the originated ;1 half has cause
    # 0 (only the ;2 half has 17, ami_originate_local_noanswer_busy).
    5: Outcome.BUSY,
    8: Outcome.NETWORK_ERROR,  # congestion: as Q.850 34/42 (no circuit, congestion); not seen
}
# Hangup causes that say nothing about a call that failed: 0 "not defined" (the Local busy
# case above) and 16 normal clearing (a call that was never answered was still cleared
# normally: Q850_OUTCOMES' 16 → ANSWERED holds only for answered calls). The reason decides.
_SILENT_CAUSES = frozenset({0, 16})


def outcome_from_originate(success: bool | None, reason: int | None, cause: int | None, *,
                           canceled: bool = False) -> Outcome:
    """The outcome of an Async Originate (Asterisk backend).

    ``success``: the OriginateResponse's ``Response`` (True for Success), None if none came
    (the AMI connection was lost; a backend that saw the call's AGI session start knows it was
    answered and passes True); a synchronous refusal (``Response: Error``, ``Message:
    Originate failed``) is ``success=False`` with no reason. ``reason``: its ``Reason``.
    ``cause``: the Q.850 ``Cause`` of the Hangup of the originated channel (the one whose
    Uniqueid is the Originate's ChannelId), None if it never had one. ``canceled``: we hung the
    attempt up ourselves (API cancel or shutdown).

    Success is ANSWERED, whatever the cause of the later hang-up (16, or 0 after an AGI
    hang-up). On failure the cause is the better witness and wins when it says something: with
    PJSIP the Reason is 0 for a 486 (cause 17 → BUSY, ami_originate_pjsip_sipp_busy) and for
    Timer B (cause 18 → NO_ANSWER, ami_originate_pjsip_unreachable_timerb); else the Reason
    decides (ORIGINATE_REASON_OUTCOMES). After a cancel the outcome is CANCELED, unless the far
    end had already refused for good (BUSY, REJECTED, UNREACHABLE), as for SIP. With neither an
    OriginateResponse nor a telling cause, nothing is known: NETWORK_ERROR (ours; retry later).
    """
    if success:
        outcome = Outcome.ANSWERED
    elif cause is not None and cause not in _SILENT_CAUSES:
        outcome = outcome_from_q850(cause)
    elif success is None:
        outcome = Outcome.NETWORK_ERROR
    elif reason is None or reason == 4:  # no reason (sync refusal), or Failure with "answer"
        outcome = Outcome.FAILED
    else:
        outcome = ORIGINATE_REASON_OUTCOMES.get(reason, Outcome.FAILED)
    if canceled and outcome not in (Outcome.BUSY, Outcome.REJECTED, Outcome.UNREACHABLE):
        return Outcome.CANCELED
    return outcome


__all__ += ["ORIGINATE_REASON_OUTCOMES", "CallAttempt", "outcome_from_originate"]


@dataclass(slots=True)
class CallAttempt:
    """What a backend's ``dial`` says about a call: its outcome, the final SIP status (embedded
    backend) or Q.850 cause (Asterisk backend) when known, a reason for people, and (once the
    call was answered) the channel to run the scenario on. ``progress``: the 1xx seen (SIP)."""

    outcome: Outcome
    status: int | None
    reason: str
    channel: Channel | None = None
    progress: list[int] = field(default_factory=list)
    cause: int | None = None

