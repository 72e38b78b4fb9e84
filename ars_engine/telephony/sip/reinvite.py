"""Re-INVITEs from the peer inside an established call (the engine's outbound call is the UAC of
the dialog; for a re-INVITE it is the UAS), sans-I/O.

Carriers' SBCs send re-INVITEs to refresh the session (RFC 4028), to move the media (a new
address or port), to put the call on hold, or with no SDP to ask for a fresh offer. Refusing
them (the engine used to answer 488) makes some of them tear the call down. Rules:

    event                                   → actions
    --------------------------------------  ----------------------------------------------------
    re-INVITE, CSeq above the last one      report ReInvite(offer or b"" when it carries none);
                                            the owner answers (:meth:`answer`: 200 with our SDP)
                                            or refuses (:meth:`reject`: 488 and the session stays
                                            as it was, §14.2)
    same re-INVITE again (retransmission)   resend our response (§17.2.1)
    re-INVITE while one is unanswered or    500 with Retry-After 0-10 s (§14.2)
      its 2xx is not yet ACKed
    request CSeq below the last one         500 (§12.2.2: out of order)
    our 2xx, no ACK yet                     resend T1, 2·T1… ≤ T2 (§13.3.1.4)
    ACK for it                              stop resending; report ReInviteAcked(its SDP: the
                                            answer to the offer we put in a 200 to an offerless
                                            re-INVITE, §13.2.1)
    no ACK for 64·T1                        report ReInviteUnacknowledged: the owner ends the
                                            call with a BYE (§13.3.1.4)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .message import SipRequest, response_to
from .transaction import InviteServerTx, SendTo

__all__ = ["ReInvite", "ReInviteAcked", "ReInviteServer", "ReInviteUnacknowledged"]

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ReInvite:
    """A re-INVITE to answer; ``offer`` is its SDP (b"": none, our 200 must carry an offer)."""

    offer: bytes


@dataclass(frozen=True, slots=True)
class ReInviteAcked:
    """The ACK for our 2xx; ``sdp`` is the answer when our 200 carried the offer."""

    sdp: bytes


@dataclass(frozen=True, slots=True)
class ReInviteUnacknowledged:
    """Our 2xx was never ACKed (64·T1): the session should end (§13.3.1.4)."""


Output = SendTo | ReInvite | ReInviteAcked | ReInviteUnacknowledged


class ReInviteServer:
    """Answers the peer's re-INVITEs in one dialog. ``contact`` is ours (every 2xx to an INVITE
    carries it, §12.1.1); ``allow`` the methods we take."""

    def __init__(self, contact: str, allow: str, *, t1: float, t2: float = 4.0) -> None:
        self.contact = contact
        self.allow = allow
        self.t1 = t1
        self.t2 = t2
        self.remote_cseq: int | None = None  # the last CSeq the peer used in the dialog
        self._tx: InviteServerTx | None = None  # the current re-INVITE
        self._source: Addr = ("", 0)
        self._offerless = False

    @property
    def deadline(self) -> float | None:
        return self._tx.deadline if self._tx is not None else None

    @property
    def waiting_for_answer(self) -> bool:
        """A re-INVITE was reported and neither :meth:`answer` nor :meth:`reject` was called."""
        return self._tx is not None and self._tx.last is None

    def check_order(self, request: SipRequest, source: Addr) -> list[Output] | None:
        """§12.2.2: a request (other than ACK/CANCEL) whose CSeq is below the last one is out
        of order: 500. Otherwise remember its CSeq and return None."""
        if request.method in ("ACK", "CANCEL"):
            return None
        seq = request.cseq.seq
        retransmission = (self._tx is not None and request.method == "INVITE"
                          and request.branch == self._tx.branch)
        if self.remote_cseq is not None and seq < self.remote_cseq and not retransmission:
            return [self._reply(request, source, 500, "Server Internal Error",
                                (("Retry-After", "0"),))]
        self.remote_cseq = max(seq, self.remote_cseq or 0)
        return None

    def receive_invite(self, request: SipRequest, now: float, source: Addr) -> list[Output]:
        tx = self._tx
        if tx is not None and request.branch == tx.branch:
            return [SendTo(tx.last, source)] if tx.last is not None else []  # retransmission
        if tx is not None and (tx.last is None or tx.g is not None):
            # §14.2: one re-INVITE at a time; the peer retries after Retry-After seconds.
            wait = str(secrets.randbelow(11))
            return [self._reply(request, source, 500, "Server Internal Error",
                                (("Retry-After", wait),))]
        self._tx = InviteServerTx(request, self.t1, self.t2)
        self._source = source
        self._offerless = not request.body.strip()
        return [ReInvite(b"" if self._offerless else request.body)]

    def answer(self, sdp: bytes, now: float) -> list[Output]:
        """200 OK with ``sdp`` (our answer, or our offer for an offerless re-INVITE)."""
        tx = self._tx
        if tx is None or tx.last is not None:
            return []
        extra = (("Contact", self.contact), ("Allow", self.allow),
                 ("Content-Type", "application/sdp"))
        data = bytes(response_to(tx.invite, 200, "OK", extra=extra, body=sdp))
        tx.respond(data, 200, now)
        return [SendTo(data, self._source)]

    def reject(self, now: float, status: int = 488, reason: str = "Not Acceptable Here"
               ) -> list[Output]:
        """A final non-2xx (488: the offer is not acceptable); the session is unchanged."""
        tx = self._tx
        if tx is None or tx.last is not None:
            return []
        data = bytes(response_to(tx.invite, status, reason))
        tx.respond(data, status, now)
        return [SendTo(data, self._source)]

    def receive_ack(self, request: SipRequest) -> list[Output]:
        tx = self._tx
        if tx is None or request.cseq.seq != tx.invite.cseq.seq or tx.g is None:
            return []  # not ours, or a repeated ACK
        tx.acked()
        if tx.final is not None and tx.final < 300:
            return [ReInviteAcked(request.body if self._offerless else b"")]
        return []

    def on_timer(self, now: float) -> list[Output]:
        tx = self._tx
        if tx is None:
            return []
        resend, gave_up = tx.on_timer(now)
        if gave_up:
            return [ReInviteUnacknowledged()] if tx.final is not None and tx.final < 300 else []
        return [SendTo(resend, self._source)] if resend is not None else []

    def _reply(self, request: SipRequest, source: Addr, status: int, reason: str,
               extra: tuple[tuple[str, str], ...] = ()) -> SendTo:
        return SendTo(bytes(response_to(request, status, reason, extra=extra)), source)
