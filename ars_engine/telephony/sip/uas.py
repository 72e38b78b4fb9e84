"""One incoming call at the QA softphone (SIP UAS over UDP), sans-I/O.

Rules (RFC 3261 unless noted; "offered" stands for proceeding or early):

    state        event                               → state        actions
    -----------  ----------------------------------  -----------  ---------------------------------
    new          start, no credentials configured    proceeding   100 Trying at once (§17.2.1);
                                                                  IncomingProgress(offered)
    new          start, credentials configured       challenged   401, fresh nonce (§22.2)
    challenged   INVITE, new branch, right digest    proceeding   100 Trying; report offered
    challenged   INVITE, wrong or missing digest     ended        403 (one challenge only)
    challenged   128·T1 without a new INVITE         ended        CallEnded(not authenticated)
    offered      ring()                              early        180: To tag, Contact, Record-Route
    offered      answer()                            answered     200 + SDP answer (RFC 3264),
                                                                  resent T1, 2·T1… ≤ T2 (§13.3.1.4)
    offered      reject(status) / hangup()           ended        300-699, resent on Timer G until
                                                                  the ACK or Timer H (§17.2.1)
    offered      CANCEL (§9.2), or BYE (§15)         ended        200 to it, 487 to the INVITE;
                                                                  CallCanceled
    answered     ACK (dialog, the INVITE's CSeq)     confirmed    stop resending; CallConfirmed
    answered     hangup()                            answered     BYE waits for the ACK (§15)
    answered     Timer H (64·T1, no ACK)             ended        BYE (§13.3.1.4); CallEnded(no ACK)
    confirmed    hangup()                            terminating  BYE, own CSeq, to the caller's
                                                                  Contact via Record-Route (§12.1.1)
    terminating  BYE answered, or Timer F            ended        CallEnded(by=local)
    answered…    BYE from the caller (§15.1.2)       ended        200; CallEnded(by=remote)
    any          INVITE retransmission (same branch) same         resend the last response (§17.2.1)
    any          ACK to a non-2xx (same branch)      same         stop resending it (§17.2.1)
    any          CANCEL after the final response     same         200 only (§9.2)
    any          OPTIONS                             same         200 with Allow (§11.2)
    any          other request in the dialog         same         488 (re-INVITE) / 405
    any          other request outside the dialog    same         481 (§12.2.2)

Responses go back to the datagram's source (symmetric signalling, RFC 3581 §4). ACKs need no
Timer I: every ACK is absorbed. Time is given (``now``); :attr:`IncomingCall.deadline` says when
:meth:`IncomingCall.on_timer` must run; :attr:`IncomingCall.finished` when the core can go.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from ...errors import ProtocolError
from .call import ALLOW, Addr, SendTo
from .digest import parse_credentials, verify
from .grammar import quote
from .headers import NameAddr
from .message import SipMessage, SipRequest, SipResponse, response_to
from .sdp import MediaRejected, NegotiatedMedia, SessionDescription, answer_offer
from .transaction import T1, T2, Final, InviteServerTx, NonInviteClientTransaction, Send, Timeout
from .transaction import Output as TxOutput
from .uri import SipUri

__all__ = ["CallCanceled", "CallConfirmed", "CallEnded", "IncomingCall", "IncomingProgress",
           "UasConfig", "UasState"]

REASONS = {480: "Temporarily Unavailable", 486: "Busy Here", 600: "Busy Everywhere",
           603: "Decline"}


class UasState(enum.Enum):
    NEW = "new"
    CHALLENGED = "challenged"
    PROCEEDING = "proceeding"
    EARLY = "early"
    ANSWERED = "answered"
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class UasConfig:
    """How the softphone answers. With ``realm`` and ``username`` set, every call is challenged
    once (401) and must come back with the right Digest credentials."""

    local_host: str
    local_port: int
    contact_user: str = "qa"
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    rtp_host: str | None = None  # the SDP answer's address; default local_host
    rtp_port: int = 40000
    telephone_event: bool = True  # False: no RFC 4733 in the answer (caller goes in-band)
    realm: str | None = None
    username: str | None = None
    password: str | None = None
    algorithm: str = "MD5"  # or SHA-256 (RFC 8760)
    user_agent: str = "ars-softphone"
    t1: float = T1
    t2: float = T2

    def __repr__(self) -> str:  # no password
        auth = f", realm {self.realm!r}" if self.realm else ""
        return f"UasConfig({self.contact_user}@{self.local_host}:{self.local_port}{auth})"


@dataclass(frozen=True, slots=True)
class IncomingProgress:
    """``offered`` (100 sent: ring, answer or reject now) or ``challenged`` (401 sent)."""

    stage: str
    status: int


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK came. ``remote_sdp``: the INVITE's offer (the ACK's body after an offerless
    INVITE, §13.2.1); ``negotiated``: None when answer() was given its own SDP."""

    remote_sdp: bytes
    negotiated: NegotiatedMedia | None


@dataclass(frozen=True, slots=True)
class CallCanceled:
    """The caller gave up before the answer (CANCEL, §9.2)."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    reason: str
    by: str  # "local" (the softphone), "remote" (the caller), "network" (no ACK)
    status: int | None = None  # the final status we sent, for a call never answered


Output = SendTo | IncomingProgress | CallConfirmed | CallCanceled | CallEnded


def _tag(message: SipMessage, header: str) -> str | None:
    try:
        return NameAddr.parse(message.get(header) or "").tag
    except ProtocolError:
        return None


def _uri_addr(uri: str) -> Addr:
    parsed = SipUri.parse(uri)
    return (parsed.host.strip("[]"), parsed.port or 5060)


class IncomingCall:
    """The UAS side of one call: 100/401, 180, 200 or a rejection, ACK, CANCEL, BYE.

    Create it from the INVITE and its source (ProtocolError if the INVITE is too broken to
    answer: the shell drops it), then call :meth:`start` at once."""

    def __init__(self, invite: SipRequest, source: Addr, config: UasConfig) -> None:
        self.config = config
        self.source = source
        self.call_id = invite.call_id or ""
        self.remote_tag = _tag(invite, "From")
        self.local_tag = secrets.token_hex(6)
        self.state = UasState.NEW
        self.cseq = 0  # our own counter for requests in the dialog (§12.1.1: starts empty)
        self.negotiated: NegotiatedMedia | None = None
        self._tx = InviteServerTx(invite, config.t1, config.t2)
        self._old: list[InviteServerTx] = []  # the challenged INVITE's (its 401, its ACK)
        self._nonce: str | None = None
        self._challenge_deadline: float | None = None
        self._bye: tuple[str, NonInviteClientTransaction] | None = None
        self._bye_pending = False
        self._dialog_from(invite)

    # -- public -------------------------------------------------------------------------------
    @property
    def offer(self) -> bytes:
        """The SDP offer of the current INVITE (b"" for an offerless INVITE)."""
        return self._tx.invite.body

    @property
    def deadline(self) -> float | None:
        times = [tx.deadline for tx in (self._tx, *self._old)]
        times += [self._challenge_deadline, self._bye[1].deadline if self._bye else None]
        return min((t for t in times if t is not None), default=None)

    @property
    def finished(self) -> bool:
        """Ended, and no retransmission left to make: the owner may drop the core."""
        return self.state is UasState.ENDED and self.deadline is None

    def start(self, now: float) -> list[Output]:
        if self.state is not UasState.NEW:
            return []
        if self.config.realm and self.config.username:
            self._nonce = secrets.token_hex(16)
            self.state = UasState.CHALLENGED
            # The 401 may be resent for 64·T1 (Timer H), then the new INVITE for 64·T1 (Timer B).
            self._challenge_deadline = now + 128 * self.config.t1
            value = (f"Digest realm={quote(self.config.realm)}, nonce={quote(self._nonce)}, "
                     f'algorithm={self.config.algorithm}, qop="auth"')
            return [self._respond(401, "Unauthorized", now, (("WWW-Authenticate", value),)),
                    IncomingProgress("challenged", 401)]
        return self._offered(now)

    def ring(self, now: float) -> list[Output]:
        """180 Ringing (again if called again)."""
        if self.state not in (UasState.PROCEEDING, UasState.EARLY):
            return []
        self.state = UasState.EARLY
        return [self._respond(180, "Ringing", now, self._dialog_headers())]

    def answer(self, now: float, sdp_answer: bytes | None = None, *,
               rtp_port: int | None = None) -> list[Output]:
        """200 OK with ``sdp_answer`` (for an offerless INVITE: our offer, §13.2.1), or with an
        answer built from the offer and the config's codecs (488 if none fits, or if there is
        no offer to answer). Nothing once the call is canceled or answered."""
        if self.state not in (UasState.PROCEEDING, UasState.EARLY):
            return []
        if sdp_answer is None:
            c = self.config
            try:
                sd, result = answer_offer(SessionDescription.parse(self.offer),
                                          c.rtp_host or c.local_host,
                                          c.rtp_port if rtp_port is None else rtp_port, c.codecs,
                                          session_id=secrets.randbelow(2**31),
                                          telephone_event=c.telephone_event)
            except ProtocolError as exc:  # includes NegotiationFailed and an empty body
                result = MediaRejected(exc.message)
            if isinstance(result, MediaRejected):
                return self._final(488, "Not Acceptable Here", now, f"SDP: {result.reason}")
            self.negotiated, sdp_answer = result, bytes(sd)
        self.state = UasState.ANSWERED
        headers = (*self._dialog_headers(), ("Allow", ALLOW), ("Content-Type", "application/sdp"))
        return [self._respond(200, "OK", now, headers, sdp_answer)]

    def reject(self, now: float, status: int = 486, reason: str | None = None) -> list[Output]:
        """A final 300-699 (486 busy, 603 decline, 480 unavailable…) before the answer."""
        if not 300 <= status <= 699:
            raise ValueError(f"{status} is not a final non-2xx status")
        if self.state not in (UasState.PROCEEDING, UasState.EARLY):
            return []
        return self._final(status, reason or REASONS.get(status, "Rejected"), now,
                           f"rejected with {status}")

    def hangup(self, now: float) -> list[Output]:
        """BYE once confirmed (after the ACK, §15); 603 Decline before the answer."""
        if self.state in (UasState.PROCEEDING, UasState.EARLY):
            return self.reject(now, 603)
        if self.state is UasState.ANSWERED:
            self._bye_pending = True
        elif self.state is UasState.CONFIRMED:
            self.state = UasState.TERMINATING
            return self._send_bye(now)
        elif self.state is UasState.CHALLENGED:
            return self._end("hung up before authentication", "local")
        return []

    def receive(self, message: SipMessage, now: float, source: Addr | None = None
                ) -> list[Output]:
        """Feed a parsed message of this call; ``source`` is the datagram's origin."""
        source = source or self.source
        if isinstance(message, SipResponse):
            if self._bye and message.branch == self._bye[0] and message.cseq.method == "BYE":
                return self._bye_events(self._bye[1].receive(message, message.status, now))
            return []  # stray response: absorbed
        method = message.method
        if method == "INVITE":
            return self._invite(message, now, source)
        if method == "ACK":
            return self._ack(message, now)
        if method == "CANCEL":
            return self._cancel(message, now, source)
        if method == "OPTIONS":
            return [self._reply(message, source, 200, "OK", (("Allow", ALLOW),
                                                             ("Accept", "application/sdp")))]
        if not self._in_dialog(message):
            return [self._reply(message, source, 481, "Call/Transaction Does Not Exist")]
        if method == "BYE":
            return self._remote_bye(message, now, source)
        return [self._reply(message, source, 405, "Method Not Allowed", (("Allow", ALLOW),))]

    def on_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        for tx in (self._tx, *self._old):
            if tx.deadline is not None and now >= tx.deadline:
                resend, timer_h = tx.on_timer(now)
                if resend is not None:
                    out.append(SendTo(resend, self.source))
                if timer_h and tx is self._tx and self.state is UasState.ANSWERED:
                    # §13.3.1.4: no ACK for 64·T1: the dialog is confirmed but must end: BYE.
                    out += self._end("no ACK", "network") + self._send_bye(now)
        if self._challenge_deadline is not None and now >= self._challenge_deadline:
            self._challenge_deadline = None
            out += self._end("not authenticated: no INVITE with credentials", "remote")
        if self._bye and (deadline := self._bye[1].deadline) is not None and now >= deadline:
            out += self._bye_events(self._bye[1].on_timer(now))
        return out

    # -- requests from the caller -------------------------------------------------------------
    def _invite(self, invite: SipRequest, now: float, source: Addr) -> list[Output]:
        branch = invite.branch
        for tx in (self._tx, *self._old):
            if tx.branch == branch:  # §17.2.1: a retransmission gets the last response again
                return [SendTo(tx.last, source)] if tx.last else []
        if self._in_dialog(invite):  # a re-INVITE: not supported (no hold, no codec change)
            return [self._reply(invite, source, 488, "Not Acceptable Here")]
        if _tag(invite, "To") is not None or invite.call_id != self.call_id or \
                _tag(invite, "From") != self.remote_tag or self.state is UasState.ENDED:
            return [self._reply(invite, source, 481, "Call/Transaction Does Not Exist")]
        if self.state is not UasState.CHALLENGED:
            return [self._reply(invite, source, 482, "Loop Detected")]  # §8.2.2.2 merged
        # The INVITE again with credentials (new branch, CSeq + 1, §22.2): a new transaction.
        self._old.append(self._tx)
        self._tx = InviteServerTx(invite, self.config.t1, self.config.t2)
        self.source, self._challenge_deadline = source, None
        self._dialog_from(invite)
        if self._authorized(invite):
            return self._offered(now)
        return self._final(403, "Forbidden", now, "wrong credentials")

    def _authorized(self, invite: SipRequest) -> bool:
        c = self.config
        try:
            credentials = parse_credentials(invite.get("Authorization") or "")
        except ProtocolError:
            return False
        # digest.verify checks the digest only; the realm, nonce, user and URI are ours to check.
        return (credentials.realm == c.realm and credentials.nonce == self._nonce
                and credentials.username == c.username and credentials.uri == invite.uri
                and verify(credentials, "INVITE", c.password or "", body=invite.body))

    def _ack(self, ack: SipRequest, now: float) -> list[Output]:
        branch = ack.branch
        for tx in (self._tx, *self._old):
            if tx.branch == branch and tx.final is not None and tx.final >= 300:
                tx.acked()  # §17.2.1: the ACK to a non-2xx is in the INVITE's transaction
                return []
        if self.state is not UasState.ANSWERED or not self._in_dialog(ack) \
                or ack.cseq.seq != self._tx.invite.cseq.seq:
            return []  # a retransmitted or stray ACK: absorbed
        self._tx.acked()  # §13.3.1.4: the ACK for the 2xx stops its retransmission
        self.state = UasState.CONFIRMED
        out: list[Output] = [CallConfirmed(self.offer or ack.body, self.negotiated)]
        if self._bye_pending:
            self.state = UasState.TERMINATING
            out += self._send_bye(now)
        return out

    def _cancel(self, cancel: SipRequest, now: float, source: Addr) -> list[Output]:
        # §9.2: the CANCEL names its INVITE by the top Via branch (and Call-ID, From, CSeq).
        branch = cancel.branch
        if not any(tx.branch == branch for tx in (self._tx, *self._old)):
            return [self._reply(cancel, source, 481, "Call/Transaction Does Not Exist")]
        out: list[Output] = [self._reply(cancel, source, 200, "OK")]
        if branch == self._tx.branch and self._tx.final is None:
            out.append(self._respond(487, "Request Terminated", now))
            self.state = UasState.ENDED
            out.append(CallCanceled())
        return out

    def _remote_bye(self, bye: SipRequest, now: float, source: Addr) -> list[Output]:
        out: list[Output] = [self._reply(bye, source, 200, "OK")]
        if self.state in (UasState.PROCEEDING, UasState.EARLY):
            # §15: the caller may end an early dialog with BYE; the INVITE then gets a 487.
            out.append(self._respond(487, "Request Terminated", now))
            self.state = UasState.ENDED
            return [*out, CallCanceled()]
        if self.state in (UasState.ANSWERED, UasState.CONFIRMED, UasState.TERMINATING):
            self._tx.acked()  # a BYE after a lost ACK: stop resending the 2xx
            out += self._end("caller hung up", "remote")
        return out  # ended: a retransmitted BYE gets its 200 again

    # -- building responses and requests ------------------------------------------------------
    def _offered(self, now: float) -> list[Output]:
        self.state = UasState.PROCEEDING
        return [self._respond(100, "Trying", now), IncomingProgress("offered", 100)]

    def _final(self, status: int, reason: str, now: float, why: str) -> list[Output]:
        return [self._respond(status, reason, now), *self._end(why, "local", status)]

    def _respond(self, status: int, reason: str, now: float,
                 extra: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> SendTo:
        """A response to the current INVITE, kept by its transaction for retransmissions."""
        out = self._reply(self._tx.invite, self.source, status, reason, extra, body)
        self._tx.respond(out.data, status, now)
        return out

    def _reply(self, request: SipRequest, source: Addr, status: int, reason: str,
               extra: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> SendTo:
        """A response; stateless for CANCEL, BYE, OPTIONS, errors (resent when they are)."""
        # §8.2.6.2: every response but 100 carries our tag.
        tag = self.local_tag if status != 100 and _tag(request, "To") is None else None
        response = response_to(request, status, reason, to_tag=tag,
                               extra=(("Server", self.config.user_agent), *extra), body=body)
        return SendTo(bytes(response), source)

    def _dialog_headers(self) -> tuple[tuple[str, str], ...]:
        # §12.1.1: a response that creates a dialog copies the Record-Route, and has a Contact.
        c = self.config
        contact = ("Contact", f"<sip:{c.contact_user}@{c.local_host}:{c.local_port}>")
        return (*(("Record-Route", r) for r in self.route_set), contact)

    def _dialog_from(self, invite: SipRequest) -> None:
        contact = invite.get("Contact")
        self.remote_target = NameAddr.parse(contact).uri if contact else \
            NameAddr.parse(invite.get("From") or "").uri
        self.route_set = tuple(invite.get_all("Record-Route"))  # §12.1.1: UAS keeps the order
        self._local_party = f"{invite.get('To') or ''};tag={self.local_tag}"
        self._remote_party = invite.get("From") or ""

    def _in_dialog(self, request: SipRequest) -> bool:
        return (request.call_id == self.call_id and _tag(request, "To") == self.local_tag
                and _tag(request, "From") == self.remote_tag)

    def _send_bye(self, now: float) -> list[Output]:
        self._bye_pending = False
        self.cseq += 1
        c, branch = self.config, "z9hG4bK" + secrets.token_hex(10)
        headers = [("Via", f"SIP/2.0/UDP {c.local_host}:{c.local_port};branch={branch};rport"),
                   ("Max-Forwards", "70"), *(("Route", r) for r in self.route_set),
                   ("From", self._local_party), ("To", self._remote_party),
                   ("Call-ID", self.call_id), ("CSeq", f"{self.cseq} BYE"),
                   ("User-Agent", c.user_agent)]
        request = SipRequest("BYE", self.remote_target, tuple(headers))
        tx = NonInviteClientTransaction(bytes(request), t1=c.t1, t2=c.t2)
        self._bye = (branch, tx)
        return self._bye_events(tx.start(now))

    def _bye_hop(self) -> Addr:
        # Loose routing (§16.12): the first Route takes the request, else the caller's Contact.
        if self.route_set:
            return _uri_addr(NameAddr.parse(self.route_set[0]).uri)
        return _uri_addr(self.remote_target)

    def _bye_events(self, events: list[TxOutput]) -> list[Output]:
        out: list[Output] = []
        for event in events:
            if isinstance(event, Send):
                out.append(SendTo(event.data, self._bye_hop()))
            elif isinstance(event, Final | Timeout) and self.state is UasState.TERMINATING:
                out += self._end("BYE timed out" if isinstance(event, Timeout) else "hung up",
                                 "local")
        return out

    def _end(self, reason: str, by: str, status: int | None = None) -> list[Output]:
        if self.state is UasState.ENDED:
            return []
        self.state = UasState.ENDED
        self._challenge_deadline = None
        return [CallEnded(reason, by, status)]
