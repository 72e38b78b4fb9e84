"""OPTIONS keepalive to the trunk (outbound proxy), sans-I/O.

Rules:

* every ``interval`` seconds one OPTIONS goes to the trunk in its own non-INVITE transaction
  (RFC 3261 §11: OPTIONS asks for capabilities; any final response proves the trunk is there,
  even 404 or 405);
* a final response marks the trunk up (with the round-trip time); Timer F (64·T1 without a
  final response) marks it down;
* only changes are reported (:class:`TrunkStatus`), so a caller can log or alert on them;
* the next OPTIONS is scheduled when the previous transaction ends, so at most one is in flight.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .call import SendTo
from .message import SipRequest, SipResponse
from .transaction import Final, NonInviteClientTransaction, Send, Timeout

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """The trunk came up (``up``) or went down; ``status`` is the answer's code."""

    up: bool
    status: int | None
    rtt_ms: float | None = None


class TrunkMonitor:
    """Probes one trunk with OPTIONS. Feed it responses whose Call-ID is :attr:`call_id`."""

    def __init__(self, trunk: Addr, local_host: str, local_port: int, *,
                 interval: float = 30.0, t1: float = 0.5, user: str = "ars") -> None:
        self.trunk = trunk
        self.local = (local_host, local_port)
        self.interval = interval
        self.t1 = t1
        self.user = user
        self.call_id = f"keepalive-{secrets.token_hex(8)}@{local_host}"
        self.up: bool | None = None  # unknown until the first probe ends
        self._cseq = 0
        self._tx: NonInviteClientTransaction | None = None
        self._branch = ""
        self._sent_at = 0.0
        self._next_probe: float | None = None

    @property
    def deadline(self) -> float | None:
        times = [t for t in (self._next_probe,) if t is not None]
        if self._tx is not None and self._tx.deadline is not None:
            times.append(self._tx.deadline)
        return min(times) if times else None

    def start(self, now: float) -> list[SendTo | TrunkStatus]:
        return self._probe(now)

    def receive(self, response: SipResponse, now: float) -> list[SendTo | TrunkStatus]:
        if self._tx is None or response.branch != self._branch:
            return []
        return self._events(self._tx.receive(response, response.status, now), now)

    def on_timer(self, now: float) -> list[SendTo | TrunkStatus]:
        out: list[SendTo | TrunkStatus] = []
        if self._tx is not None and self._tx.deadline is not None and now >= self._tx.deadline:
            out += self._events(self._tx.on_timer(now), now)
        if self._next_probe is not None and now >= self._next_probe:
            out += self._probe(now)
        return out

    def _probe(self, now: float) -> list[SendTo | TrunkStatus]:
        self._next_probe = None
        self._cseq += 1
        self._branch = "z9hG4bK" + secrets.token_hex(10)
        host, port = self.local
        trunk = f"sip:{self.trunk[0]}:{self.trunk[1]}"
        request = SipRequest("OPTIONS", trunk, (
            ("Via", f"SIP/2.0/UDP {host}:{port};branch={self._branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.user}@{host}>;tag={secrets.token_hex(4)}"),
            ("To", f"<{trunk}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self._cseq} OPTIONS"),
            ("Accept", "application/sdp"),
        ))
        self._tx = NonInviteClientTransaction(bytes(request), t1=self.t1)
        self._sent_at = now
        return [SendTo(o.data, self.trunk) for o in self._tx.start(now) if isinstance(o, Send)]

    def _events(self, events: Sequence[object], now: float) -> list[SendTo | TrunkStatus]:
        out: list[SendTo | TrunkStatus] = []
        for event in events:
            if isinstance(event, Send):
                out.append(SendTo(event.data, self.trunk))
            elif isinstance(event, Final | Timeout):
                up = isinstance(event, Final)
                status = event.status if isinstance(event, Final) else None
                self._tx = None
                self._next_probe = now + self.interval
                if up != self.up:
                    self.up = up
                    out.append(TrunkStatus(up, status,
                                           (now - self._sent_at) * 1000 if up else None))
        return out
