"""One outbound call from the engine (SIP UAC over UDP), sans-I/O.

Rules (RFC 3261 unless noted):

    state       event                               → state        actions
    ----------  ----------------------------------  -----------  ----------------------------------
    calling     start                               calling      INVITE (transaction, Timer A/B)
    calling/    1xx                                 early        report CallProgress; a pending
    early                                                        CANCEL goes out now (§9.1)
    calling/    401/407, credentials, first time    calling      INVITE again, CSeq+1, new branch,
    early                                                        Authorization (§22.2, §8.1.3.5)
    calling/    2xx                                 confirmed    ACK to the Contact via the route
    early                                                        set (§13.2.2.4, §12.1.2); report
                                                                 CallAnswered. After a user cancel:
                                                                 ACK then BYE (§9.1)
    calling/    300-699 (the transaction ACKs)      ended        report CallEnded(outcome)
    early
    calling/    Timer B                             ended        CallEnded(unreachable / no_answer)
    early
    early       answer timeout                      early        CANCEL (same branch, §9.1)
    calling     answer timeout                      calling      CANCEL once a 1xx arrives
    confirmed   2xx retransmitted                   confirmed    resend the ACK (§13.2.2.4)
    confirmed   BYE from the peer                   ended        200 OK; CallEnded(by=remote)
    confirmed   re-INVITE (ACK for its 2xx)         confirmed    ReInvite / ReInviteAcked for the
                                                                 owner to answer (see reinvite.py)
    confirmed   hangup()                            terminating  BYE (new transaction)
    terminating BYE answered or Timer F             ended        CallEnded(by=local)
    any         request outside the dialog          same         481 (§12.2.2)

Time is given (``now``); :attr:`OutboundCall.deadline` says when :meth:`on_timer` must run.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from ..outcomes import Outcome, outcome_from_sip_status
from .digest import authorization, parse_challenge
from .headers import NameAddr, Via
from .message import SipMessage, SipRequest, SipResponse, response_to
from .reinvite import ReInvite, ReInviteAcked, ReInviteServer, ReInviteUnacknowledged
from .transaction import (
    Final,
    InviteClientTransaction,
    NonInviteClientTransaction,
    Provisional,
    Send,
    SendTo,
    Timeout,
)
from .transaction import Output as TxOutput
from .uri import SipUri

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
Addr = tuple[str, int]


class CallState(enum.Enum):
    CALLING = "calling"
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallConfig:
    """Where and how to call. ``proxy`` is a registrar-less outbound proxy (trunk)."""

    target: str  # Request-URI, e.g. sip:01012345678@trunk.example or sip:qa@127.0.0.1:5080
    local_host: str
    local_port: int
    from_user: str = "ars"
    display_name: str | None = None
    proxy: Addr | None = None
    username: str | None = None
    password: str | None = None
    answer_timeout: float = 30.0  # from the INVITE until a 2xx; then CANCEL
    user_agent: str = "ars-engine"
    t1: float = 0.5

    def __repr__(self) -> str:  # no password
        return f"CallConfig({self.target}, via {self.proxy or 'direct'})"


@dataclass(frozen=True, slots=True)
class CallProgress:
    status: int
    sdp: bytes = b""  # early media (183 with SDP)


@dataclass(frozen=True, slots=True)
class CallAnswered:
    sdp: bytes


@dataclass(frozen=True, slots=True)
class CallEnded:
    outcome: Outcome
    status: int | None
    reason: str
    by: str  # "remote", "local", "network"


Output = SendTo | CallProgress | CallAnswered | CallEnded | ReInvite | ReInviteAcked


def _uri_addr(uri: str) -> Addr:
    parsed = SipUri.parse(uri)
    return (parsed.host.strip("[]"), parsed.port or 5060)


class OutboundCall:
    """The UAC side of one call: INVITE, auth, CANCEL, ACK, BYE."""

    def __init__(self, config: CallConfig, sdp_offer: bytes, *, call_id: str | None = None,
                 from_tag: str | None = None) -> None:
        self.config = config
        self.offer = sdp_offer
        self.call_id = call_id or f"{secrets.token_hex(12)}@{config.local_host}"
        self.from_tag = from_tag or secrets.token_hex(6)
        self.state = CallState.CALLING
        self.cseq = 1
        self.to_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: tuple[str, ...] = ()
        self.status: int | None = None
        self._first_hop: Addr = config.proxy or _uri_addr(config.target)
        self._invite: SipRequest | None = None
        self._invite_tx: InviteClientTransaction | None = None
        self._invite_branch = ""
        self._others: dict[str, tuple[str, NonInviteClientTransaction]] = {}
        self._auth_tried = False
        self._answer_deadline: float | None = None
        self._cancel: str | None = None  # why a CANCEL is wanted: "no_answer" / "canceled"
        self._cancel_sent = False
        self._cancel_deadline: float | None = None
        self._provisional_seen = False  # any 1xx, 100 included: a CANCEL may go out (§9.1)
        # INVITE transactions replaced by an authenticated retry: they still ACK a resent
        # 401/407 (§17.1.1.2) until their Timer D ends.
        self._old_invites: dict[str, InviteClientTransaction] = {}
        self._ack: SendTo | None = None
        self._reinvites = ReInviteServer(
            f"<sip:{config.from_user}@{config.local_host}:{config.local_port}>", ALLOW,
            t1=config.t1)

    # -- public -------------------------------------------------------------------------------
    @property
    def deadline(self) -> float | None:
        times = [t for t in (self._answer_deadline, self._cancel_deadline) if t is not None]
        if self._invite_tx is not None and self._invite_tx.deadline is not None:
            times.append(self._invite_tx.deadline)
        times.extend(tx.deadline for tx in self._old_invites.values() if tx.deadline is not None)
        times.extend(tx.deadline for _, tx in self._others.values() if tx.deadline is not None)
        if self._reinvites.deadline is not None:
            times.append(self._reinvites.deadline)
        return min(times) if times else None

    def start(self, now: float) -> list[Output]:
        self._answer_deadline = now + self.config.answer_timeout
        return self._send_invite(now, auth_header=None)

    def hangup(self, now: float) -> list[Output]:
        """The engine ends the call: CANCEL while ringing, BYE once answered."""
        if self.state in (CallState.CALLING, CallState.EARLY):
            return self._want_cancel("canceled", now)
        if self.state is CallState.CONFIRMED:
            self.state = CallState.TERMINATING
            return self._send_in_dialog("BYE", now)
        return []

    def answer_reinvite(self, sdp: bytes, now: float) -> list[Output]:
        """Answer the peer's re-INVITE (reported as :class:`ReInvite`) with 200 and ``sdp``."""
        return self._from_reinvites(self._reinvites.answer(sdp, now), now)

    def reject_reinvite(self, now: float, status: int = 488,
                        reason: str = "Not Acceptable Here") -> list[Output]:
        """Refuse the peer's re-INVITE; the session goes on as it was (§14.2)."""
        return self._from_reinvites(self._reinvites.reject(now, status, reason), now)

    def network_failure(self, reason: str) -> list[Output]:
        """The transport could not deliver (e.g. ICMP port unreachable)."""
        if self.state is CallState.ENDED:
            return []
        outcome = Outcome.UNREACHABLE if self.state is CallState.CALLING else \
            Outcome.NETWORK_ERROR
        return self._end(outcome, None, reason, "network")

    def receive(self, message: SipMessage, now: float, source: Addr | None = None
                ) -> list[Output]:
        """Feed a parsed message; ``source`` is where the datagram came from (replies to a
        request go back there: symmetric signalling, RFC 3581 §4)."""
        if isinstance(message, SipResponse):
            return self._response(message, now)
        return self._request(message, now, source)

    def on_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self._answer_deadline is not None and now >= self._answer_deadline:
            self._answer_deadline = None
            if self.state in (CallState.CALLING, CallState.EARLY):
                out += self._want_cancel("no_answer", now)
        if self._cancel_deadline is not None and now >= self._cancel_deadline:
            self._cancel_deadline = None
            if self.state in (CallState.CALLING, CallState.EARLY):
                # §9.1: no final response 64·T1 after our CANCEL: give up on the INVITE.
                outcome = outcome_from_sip_status(None, timed_out=self._cancel == "no_answer",
                                                  canceled=self._cancel == "canceled")
                out += self._end(outcome, None, "no final response after CANCEL", "network")
        for branch, old in list(self._old_invites.items()):
            if old.deadline is not None and now >= old.deadline:
                out += [SendTo(o.data, self._first_hop) for o in old.on_timer(now)
                        if isinstance(o, Send)]
            if old.terminated:
                del self._old_invites[branch]
        if self._invite_tx is not None and self._invite_tx.deadline is not None \
                and now >= self._invite_tx.deadline:
            out += self._invite_events(self._invite_tx.on_timer(now), now)
        for branch, (method, tx) in list(self._others.items()):
            if tx.deadline is not None and now >= tx.deadline:
                out += self._other_events(method, tx.on_timer(now), now)
            if tx.terminated:
                del self._others[branch]
        if self._reinvites.deadline is not None and now >= self._reinvites.deadline:
            out += self._from_reinvites(self._reinvites.on_timer(now), now)
        return out

    # -- building requests --------------------------------------------------------------------
    def _via(self, branch: str) -> str:
        c = self.config
        return f"SIP/2.0/UDP {c.local_host}:{c.local_port};branch={branch};rport"

    def _from(self) -> str:
        c = self.config
        name = f'"{c.display_name}" ' if c.display_name else ""
        return f"{name}<sip:{c.from_user}@{c.local_host}>;tag={self.from_tag}"

    def _to(self) -> str:
        tag = f";tag={self.to_tag}" if self.to_tag else ""
        return f"<{self.config.target}>{tag}"

    def _send_invite(self, now: float, auth_header: tuple[str, str] | None) -> list[Output]:
        c = self.config
        if self._invite_tx is not None and not self._invite_tx.terminated:
            self._old_invites[self._invite_branch] = self._invite_tx
        self._provisional_seen = False
        self._invite_branch = "z9hG4bK" + secrets.token_hex(10)
        headers = [
            ("Via", self._via(self._invite_branch)),
            ("Max-Forwards", "70"),
            ("From", self._from()),
            ("To", f"<{c.target}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} INVITE"),
            ("Contact", f"<sip:{c.from_user}@{c.local_host}:{c.local_port}>"),
            ("Allow", ALLOW),
            ("User-Agent", c.user_agent),
            ("Content-Type", "application/sdp"),
        ]
        if auth_header:
            headers.append(auth_header)
        self._invite = SipRequest("INVITE", c.target, tuple(headers), self.offer)
        invite = self._invite
        self._invite_tx = InviteClientTransaction(bytes(invite), self._non2xx_ack, t1=c.t1)
        return self._invite_events(self._invite_tx.start(now), now)

    def _non2xx_ack(self, response: object) -> bytes:
        # RFC 3261 §17.1.1.3: same Request-URI, Call-ID, From, CSeq number and top Via as the
        # INVITE; To from the response (with its tag).
        assert isinstance(response, SipResponse) and self._invite is not None
        invite = self._invite
        headers = (
            ("Via", invite.get("Via") or ""),
            ("Max-Forwards", "70"),
            ("From", invite.get("From") or ""),
            ("To", response.get("To") or ""),
            ("Call-ID", self.call_id),
            ("CSeq", f"{invite.cseq.seq} ACK"),
        )
        return bytes(SipRequest("ACK", invite.uri, headers))

    def _dialog_request(self, method: str, cseq: int, branch: str) -> SipRequest:
        headers = [("Via", self._via(branch)), ("Max-Forwards", "70")]
        headers += [("Route", route) for route in self.route_set]
        headers += [("From", self._from()), ("To", self._to()), ("Call-ID", self.call_id),
                    ("CSeq", f"{cseq} {method}")]
        if method != "ACK":
            headers.append(("User-Agent", self.config.user_agent))
        return SipRequest(method, self.remote_target or self.config.target, tuple(headers))

    def _dialog_hop(self) -> Addr:
        # Loose routing (§16.12): the first Route, else the remote target; an outbound proxy
        # (trunk) always takes the request first.
        if self.config.proxy:
            return self.config.proxy
        if self.route_set:
            return _uri_addr(NameAddr.parse(self.route_set[0]).uri)
        return _uri_addr(self.remote_target or self.config.target)

    def _send_in_dialog(self, method: str, now: float) -> list[Output]:
        self.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(10)
        request = self._dialog_request(method, self.cseq, branch)
        tx = NonInviteClientTransaction(bytes(request), t1=self.config.t1)
        self._others[branch] = (method, tx)
        return self._other_events(method, tx.start(now), now, hop=self._dialog_hop())

    def _want_cancel(self, why: str, now: float) -> list[Output]:
        if self._cancel is None or why == "canceled":
            self._cancel = why
        if self._provisional_seen and not self._cancel_sent:
            return self._send_cancel(now)
        return []

    def _send_cancel(self, now: float) -> list[Output]:
        # §9.1: same Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE.
        assert self._invite is not None
        invite = self._invite
        self._cancel_sent = True
        self._cancel_deadline = now + 64 * self.config.t1
        headers = (("Via", invite.get("Via") or ""), ("Max-Forwards", "70"),
                   ("From", invite.get("From") or ""), ("To", invite.get("To") or ""),
                   ("Call-ID", self.call_id), ("CSeq", f"{invite.cseq.seq} CANCEL"))
        tx = NonInviteClientTransaction(bytes(SipRequest("CANCEL", invite.uri, headers)),
                                        t1=self.config.t1)
        self._others["cancel:" + self._invite_branch] = ("CANCEL", tx)
        return self._other_events("CANCEL", tx.start(now), now)

    # -- responses ----------------------------------------------------------------------------
    def _response(self, response: SipResponse, now: float) -> list[Output]:
        if not response.get_all("Via"):
            return []
        branch = response.branch
        method = response.cseq.method
        if method == "INVITE" and branch == self._invite_branch and self._invite_tx:
            return self._invite_events(self._invite_tx.receive(response, response.status, now),
                                       now)
        if method == "INVITE" and branch in self._old_invites:
            old = self._old_invites[branch]  # a resent 401/407: ACK it again, nothing more
            return [SendTo(o.data, self._first_hop)
                    for o in old.receive(response, response.status, now) if isinstance(o, Send)]
        key = "cancel:" + (branch or "") if method == "CANCEL" else (branch or "")
        if key in self._others:
            name, tx = self._others[key]
            return self._other_events(name, tx.receive(response, response.status, now), now)
        return []  # stray or late response: absorbed

    def _invite_events(self, events: list[TxOutput], now: float) -> list[Output]:
        out: list[Output] = []
        for event in events:
            if isinstance(event, Send):
                out.append(SendTo(event.data, self._first_hop))
            elif isinstance(event, Provisional):
                assert isinstance(event.response, SipResponse)
                out += self._provisional(event.response, now)
            elif isinstance(event, Final):
                assert isinstance(event.response, SipResponse)
                out += self._final(event.response, now)
            elif isinstance(event, Timeout) and self.state in (CallState.CALLING,
                                                               CallState.EARLY):
                outcome = outcome_from_sip_status(None, timed_out=self._cancel == "no_answer",
                                                  canceled=self._cancel == "canceled")
                out += self._end(outcome, None, "no final response (Timer B)", "network")
        return out

    def _provisional(self, response: SipResponse, now: float) -> list[Output]:
        if self.state not in (CallState.CALLING, CallState.EARLY):
            return []
        self._provisional_seen = True
        if response.status == 100:
            # 100 Trying stops Timer B, so a pending CANCEL must go out now (§9.1).
            return self._send_cancel(now) if self._cancel and not self._cancel_sent else []
        self.state = CallState.EARLY
        out: list[Output] = [CallProgress(response.status, response.body)]
        if self._cancel and not self._cancel_sent:
            out += self._send_cancel(now)
        return out

    def _final(self, response: SipResponse, now: float) -> list[Output]:
        status = response.status
        if 200 <= status < 300:
            return self._answered(response, now)
        if self.state not in (CallState.CALLING, CallState.EARLY):
            return []
        if status in (401, 407) and not self._auth_tried and self.config.username:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            answer = "Authorization" if status == 401 else "Proxy-Authorization"
            challenge_text = response.get(header)
            if challenge_text:
                self._auth_tried = True
                self.cseq += 1
                challenge = parse_challenge(challenge_text)
                value = authorization(challenge, "INVITE", self.config.target,
                                      self.config.username, self.config.password or "",
                                      cnonce=secrets.token_hex(8), body=self.offer)
                self.state = CallState.CALLING
                return self._send_invite(now, (answer, value))
        outcome = outcome_from_sip_status(status, timed_out=self._cancel == "no_answer",
                                          canceled=self._cancel == "canceled")
        return self._end(outcome, status, response.reason, "remote")

    def _answered(self, response: SipResponse, now: float) -> list[Output]:
        if self.state in (CallState.CONFIRMED, CallState.TERMINATING):
            return [self._ack] if self._ack is not None else []  # §13.2.2.4: re-ACK
        if self.state is CallState.ENDED:
            return []
        self.status = response.status
        to = NameAddr.parse(response.get("To") or "")
        self.to_tag = to.tag
        contact = response.get("Contact")
        self.remote_target = NameAddr.parse(contact).uri if contact else self.config.target
        # §12.1.2: the UAC's route set is the Record-Route list in reverse.
        self.route_set = tuple(reversed(response.get_all("Record-Route")))
        self.state = CallState.CONFIRMED
        self._answer_deadline = None
        ack = self._dialog_request("ACK", response.cseq.seq, "z9hG4bK" + secrets.token_hex(10))
        self._ack = SendTo(bytes(ack), self._dialog_hop())
        if self._cancel == "canceled":
            # §9.1: the 2xx crossed our CANCEL: acknowledge it, then end the call.
            self.state = CallState.TERMINATING
            return [self._ack, *self._send_in_dialog("BYE", now)]
        return [self._ack, CallAnswered(response.body)]

    def _other_events(self, method: str, events: list[TxOutput], now: float,
                      hop: Addr | None = None) -> list[Output]:
        out: list[Output] = []
        for event in events:
            if isinstance(event, Send):
                out.append(SendTo(event.data, hop or (
                    self._dialog_hop() if method == "BYE" else self._first_hop)))
            elif method == "BYE" and isinstance(event, Final | Timeout) and \
                    self.state is CallState.TERMINATING:
                outcome = Outcome.CANCELED if self._cancel == "canceled" else Outcome.ANSWERED
                reason = "BYE timed out" if isinstance(event, Timeout) else "hung up"
                out += self._end(outcome, self.status, reason, "local")
        return out

    # -- requests from the peer ---------------------------------------------------------------
    def _request(self, request: SipRequest, now: float, source: Addr | None) -> list[Output]:
        in_dialog = (request.call_id == self.call_id and self.to_tag is not None
                     and NameAddr.parse(request.get("To") or "<sip:x>").tag == self.from_tag)
        if request.method == "ACK":
            return self._from_reinvites(self._reinvites.receive_ack(request), now) \
                if in_dialog else []
        if request.method == "OPTIONS" and not in_dialog:
            return [self._reply(request, source, 200, "OK")]
        if not in_dialog:
            return [self._reply(request, source, 481, "Call/Transaction Does Not Exist")]
        reply_to = self._reply_addr(request, source)
        out_of_order = self._reinvites.check_order(request, reply_to)
        if out_of_order is not None:
            return self._from_reinvites(out_of_order, now)
        if request.method == "BYE":
            reply = self._reply(request, source, 200, "OK")
            if self.state in (CallState.CONFIRMED, CallState.TERMINATING):
                return [reply, *self._end(Outcome.ANSWERED, self.status, "callee hung up",
                                          "remote")]
            return [reply]
        if request.method in ("OPTIONS", "INFO", "UPDATE"):
            return [self._reply(request, source, 200, "OK")]
        if request.method == "INVITE":
            if self.state is not CallState.CONFIRMED:  # crossing our BYE
                return [self._reply(request, source, 481, "Call/Transaction Does Not Exist")]
            return self._from_reinvites(self._reinvites.receive_invite(request, now, reply_to),
                                        now)
        return [self._reply(request, source, 405, "Method Not Allowed")]

    def _from_reinvites(self, outputs: Sequence[object], now: float) -> list[Output]:
        out: list[Output] = []
        for o in outputs:
            if isinstance(o, SendTo):
                out.append(o)
            elif isinstance(o, ReInviteUnacknowledged):
                if self.state is CallState.CONFIRMED:  # §13.3.1.4: end the session
                    self.state = CallState.TERMINATING
                    out += self._send_in_dialog("BYE", now)
            elif isinstance(o, ReInvite | ReInviteAcked):
                out.append(o)
        return out

    def _reply_addr(self, request: SipRequest, source: Addr | None) -> Addr:
        if source is not None:
            return source
        # no datagram source known: the top Via's sent-by (§18.2.2)
        vias = request.get_all("Via")
        top = Via.parse(vias[0]) if vias else None
        return (top.host, top.port or 5060) if top is not None else self._first_hop

    def _reply(self, request: SipRequest, source: Addr | None, status: int,
               reason: str) -> SendTo:
        extra = (("Allow", ALLOW),) if status == 405 else ()
        response = response_to(request, status, reason, extra=extra)
        return SendTo(bytes(response), self._reply_addr(request, source))

    def _end(self, outcome: Outcome, status: int | None, reason: str,
             by: str) -> list[Output]:
        if self.state is CallState.ENDED:
            return []
        self.state = CallState.ENDED
        self._answer_deadline = None
        return [CallEnded(outcome, status, reason, by)]
