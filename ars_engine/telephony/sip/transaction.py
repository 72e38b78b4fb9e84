"""SIP client transactions over UDP, sans-I/O (RFC 3261 §17.1, with RFC 6026's Accepted state).

Rules of the INVITE client transaction (§17.1.1, figure 5; RFC 6026 §7.2):

    state       event                        → state       actions
    ----------  ---------------------------  ----------  ----------------------------------------
    calling     start                        calling     send INVITE; A = T1; B = 64·T1
    calling     timer A                      calling     resend INVITE; A doubles (UDP only)
    calling     timer B                      terminated  report Timeout
    calling/    1xx                          proceeding  report Provisional (A stops; B stops:
    proceeding                                           the TU's ring timeout takes over)
    calling/    2xx                          accepted    report Final; M = 64·T1 (the TU ACKs)
    proceeding
    calling/    300-699                      completed   send ACK; report Final; D = 32 s
    proceeding
    accepted    2xx (retransmission)         accepted    report Final again (the TU re-ACKs)
    completed   300-699 (retransmission)     completed   resend the same ACK
    accepted    timer M                      terminated
    completed   timer D                      terminated

Rules of the non-INVITE client transaction (§17.1.2, figure 6), used for BYE, CANCEL and OPTIONS:

    trying      start                        trying      send; E = T1; F = 64·T1
    trying      timer E                      trying      resend; E = min(2E, T2)
    proceeding  timer E                      proceeding  resend; E = T2
    trying/     1xx                          proceeding  report Provisional
    proceeding
    trying/     200-699                      completed   report Final; K = T4
    proceeding
    any         timer F                      terminated  report Timeout
    completed   timer K                      terminated

The response side of an INVITE server transaction (§17.2.1; :class:`InviteServerTx`, used by
the UAS core and for re-INVITEs): the last response is resent for each retransmitted INVITE, a
final one on Timer G (T1, 2·T1… ≤ T2) until the ACK, given up on Timer H (64·T1).

No clocks inside: every method takes ``now`` (seconds, monotonic) and :attr:`deadline` says when
:meth:`on_timer` must be called next. Outputs are lists of :class:`Send` and of events.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .message import SipRequest

T1 = 0.5  # RFC 3261 §17.1.1.1: RTT estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests
T4 = 5.0  # maximum duration a message remains in the network
TIMER_D = 32.0  # ≥ 32 s for unreliable transports (§17.1.1.2)


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to put on the wire (to the transaction's destination)."""

    data: bytes

    def __repr__(self) -> str:
        return f"Send({len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class SendTo:
    """Bytes to put on the wire to ``addr`` (an output of the call cores)."""

    data: bytes
    addr: tuple[str, int]

    def __repr__(self) -> str:
        return f"SendTo({len(self.data)} B → {self.addr[0]}:{self.addr[1]})"


@dataclass(frozen=True, slots=True)
class Provisional:
    """A 1xx response for the transaction user."""

    response: object
    status: int


@dataclass(frozen=True, slots=True)
class Final:
    """A final response (2xx or 300-699) for the transaction user."""

    response: object
    status: int


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B or F fired: no final response came (RFC 3261 maps this to 408)."""


Output = Send | Provisional | Final | Timeout


class InviteClientTransaction:
    """One INVITE sent over UDP.

    ``make_ack(response) -> bytes`` builds the ACK for a non-2xx final response (§17.1.1.3: same
    Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, To from the response); the
    transaction owns that ACK because it belongs to the same transaction. A 2xx is ACKed by the
    transaction user in a new transaction, to the Contact of the 2xx (§13.2.2.4).
    """

    def __init__(self, invite: bytes, make_ack: Callable[[object], bytes], *,
                 t1: float = T1) -> None:
        self.invite = invite
        self._make_ack = make_ack
        self.t1 = t1
        self.state = TxState.CALLING
        self._a_interval = t1
        self._a: float | None = None  # next retransmission
        self._b: float | None = None  # give-up time while calling
        self._end: float | None = None  # timer D or M
        self._ack: bytes | None = None
        self.retransmissions = 0

    @property
    def deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (None: no timer running)."""
        times = [t for t in (self._a, self._b, self._end) if t is not None]
        return min(times) if times else None

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def start(self, now: float) -> list[Output]:
        self._a = now + self._a_interval
        self._b = now + 64 * self.t1
        return [Send(self.invite)]

    def receive(self, response: object, status: int, now: float) -> list[Output]:
        """Feed a response whose Via branch and CSeq matched this transaction."""
        state = self.state
        if state is TxState.TERMINATED:
            return []
        if 100 <= status < 200:
            if state in (TxState.CALLING, TxState.PROCEEDING):
                self.state = TxState.PROCEEDING
                self._a = self._b = None
                return [Provisional(response, status)]
            return []
        if 200 <= status < 300:
            if state in (TxState.CALLING, TxState.PROCEEDING):
                self.state = TxState.ACCEPTED
                self._a = self._b = None
                self._end = now + 64 * self.t1  # timer M (RFC 6026 §8.4)
                return [Final(response, status)]
            if state is TxState.ACCEPTED:
                return [Final(response, status)]  # retransmitted 2xx: the TU re-sends its ACK
            return []
        if 300 <= status < 700:
            if state in (TxState.CALLING, TxState.PROCEEDING):
                self.state = TxState.COMPLETED
                self._a = self._b = None
                self._end = now + TIMER_D
                self._ack = self._make_ack(response)
                return [Send(self._ack), Final(response, status)]
            if state is TxState.COMPLETED and self._ack is not None:
                return [Send(self._ack)]  # §17.1.1.2: the final was retransmitted, ACK again
        return []

    def on_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self._b is not None and now >= self._b:
            self.state = TxState.TERMINATED
            self._a = self._b = self._end = None
            return [Timeout()]
        if self._a is not None and now >= self._a:
            self._a_interval *= 2  # §17.1.1.2: timer A doubles
            self._a = now + self._a_interval
            self.retransmissions += 1
            out.append(Send(self.invite))
        if self._end is not None and now >= self._end:
            self.state = TxState.TERMINATED
            self._end = None
        return out


class NonInviteClientTransaction:
    """One BYE, CANCEL or OPTIONS sent over UDP (RFC 3261 §17.1.2)."""

    def __init__(self, request: bytes, *, t1: float = T1, t2: float = T2,
                 t4: float = T4) -> None:
        self.request = request
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.state = TxState.TRYING
        self._e_interval = t1
        self._e: float | None = None
        self._f: float | None = None
        self._k: float | None = None
        self.retransmissions = 0

    @property
    def deadline(self) -> float | None:
        times = [t for t in (self._e, self._f, self._k) if t is not None]
        return min(times) if times else None

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def start(self, now: float) -> list[Output]:
        self._e = now + self._e_interval
        self._f = now + 64 * self.t1
        return [Send(self.request)]

    def receive(self, response: object, status: int, now: float) -> list[Output]:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return []  # completed: retransmitted finals are absorbed (§17.1.2.2)
        if 100 <= status < 200:
            self.state = TxState.PROCEEDING
            return [Provisional(response, status)]
        if 200 <= status < 700:
            self.state = TxState.COMPLETED
            self._e = self._f = None
            self._k = now + self.t4
            return [Final(response, status)]
        return []

    def on_timer(self, now: float) -> list[Output]:
        if self._f is not None and now >= self._f:
            self.state = TxState.TERMINATED
            self._e = self._f = self._k = None
            return [Timeout()]
        out: list[Output] = []
        if self._e is not None and now >= self._e:
            if self.state is TxState.TRYING:
                self._e_interval = min(self._e_interval * 2, self.t2)
            else:
                self._e_interval = self.t2  # §17.1.2.2: proceeding resends every T2
            self._e = now + self._e_interval
            self.retransmissions += 1
            out.append(Send(self.request))
        if self._k is not None and now >= self._k:
            self.state = TxState.TERMINATED
            self._k = None
        return out


class InviteServerTx:
    """The response side of one INVITE server transaction over UDP (§17.2.1): the last response
    is resent for each retransmitted INVITE; a final one is resent on Timer G until the ACK or
    Timer H. The UAS core resends a 2xx on the same schedule (§13.3.1.4)."""

    __slots__ = ("_g_interval", "branch", "final", "g", "h", "invite", "last", "t1", "t2")

    def __init__(self, invite: SipRequest, t1: float, t2: float) -> None:
        self.invite, self.branch, self.t1, self.t2 = invite, invite.branch, t1, t2
        self.last: bytes | None = None
        self.final: int | None = None
        self._g_interval = t1
        self.g: float | None = None  # next retransmission of the final
        self.h: float | None = None  # give up waiting for the ACK

    @property
    def deadline(self) -> float | None:
        return min((t for t in (self.g, self.h) if t is not None), default=None)

    def respond(self, data: bytes, status: int, now: float) -> None:
        self.last = data
        if status >= 200:
            self.final, self.g, self.h = status, now + self.t1, now + 64 * self.t1

    def acked(self) -> None:
        self.g = self.h = None

    def on_timer(self, now: float) -> tuple[bytes | None, bool]:
        """(bytes to resend or None, True when Timer H fired)."""
        if self.h is not None and now >= self.h:
            self.g = self.h = None
            return None, True
        if self.g is not None and now >= self.g:
            self._g_interval = min(2 * self._g_interval, self.t2)  # §17.2.1 Timer G
            self.g = now + self._g_interval
            return self.last, False
        return None, False
