"""Two SIP call cores back to back with no network (STYLE.md rule 8, h11's ``ConnectionPair``).

The engine's :class:`OutboundCall` (UAC) and the softphone's :class:`IncomingCall` (UAS)
exchange datagrams through a FIFO queue: every ``SendTo`` is serialised bytes, parsed again
with :func:`parse_message` (both cores see exactly what a socket would carry) and fed to the
core its address names, with the sender's address as the source. A virtual clock jumps to the
earliest deadline of either core or of a scheduled action, so 32 s of Timer H cost nothing.

``drop`` and ``duplicate`` are predicates on each :class:`Datagram` (numbered from 1 over both
directions): dropped ones never arrive, duplicated ones arrive twice in a row. The softphone is
driven by plans: ``pair.on("offered", 3.0, "phone", "answer")`` answers 3 s of virtual time after
the call is offered (IncomingProgress "offered"); triggers are ``offered`` and ``confirmed``
(softphone) and ``answered`` (engine, CallAnswered).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ars_engine.telephony.sip import call as uac
from ars_engine.telephony.sip import uas
from ars_engine.telephony.sip.call import CallConfig, OutboundCall, SendTo
from ars_engine.telephony.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from ars_engine.telephony.sip.uas import IncomingCall, UasConfig

ENGINE = ("127.0.0.1", 5060)
PHONE = ("127.0.0.1", 5080)
OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
         b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")


def engine_config(**kw: Any) -> CallConfig:
    """The engine calling the softphone directly (no proxy)."""
    base: dict[str, Any] = {"target": f"sip:qa@{PHONE[0]}:{PHONE[1]}", "local_host": ENGINE[0],
                            "local_port": ENGINE[1], "answer_timeout": 20.0}
    return CallConfig(**(base | kw))


def phone_config(**kw: Any) -> UasConfig:
    """The softphone at PHONE, RTP on port 40000."""
    base: dict[str, Any] = {"local_host": PHONE[0], "local_port": PHONE[1]}
    return UasConfig(**(base | kw))


@dataclass(frozen=True, slots=True)
class Datagram:
    """One datagram put on the (virtual) wire."""

    n: int  # 1-based, over both directions
    time: float
    sender: str  # "engine" or "phone"
    message: SipMessage
    dropped: bool = False

    def is_request(self, method: str) -> bool:
        return isinstance(self.message, SipRequest) and self.message.method == method

    def is_response(self, status: int, method: str = "INVITE") -> bool:
        m = self.message
        return isinstance(m, SipResponse) and m.status == status and m.cseq.method == method

    def __repr__(self) -> str:
        m = self.message
        what = m.method if isinstance(m, SipRequest) else f"{m.status} ({m.cseq.method})"
        lost = " LOST" if self.dropped else ""
        return f"#{self.n} {self.time:.2f} {self.sender}: {what}{lost}"


Predicate = Callable[[Datagram], bool]


def first(match: Predicate, count: int = 1) -> Predicate:
    """A predicate true for the first ``count`` datagrams ``match`` accepts (drop once…)."""
    seen = itertools.count(1)
    return lambda d: match(d) and next(seen) <= count


def never(_: Datagram) -> bool:
    return False


@dataclass
class CallPair:
    """An OutboundCall and an IncomingCall wired back to back; see the module docstring."""

    call_config: CallConfig = field(default_factory=engine_config)
    phone_config: UasConfig = field(default_factory=phone_config)
    offer: bytes = OFFER
    drop: Predicate = never
    duplicate: Predicate = never
    now: float = 0.0

    def __post_init__(self) -> None:
        self.engine = OutboundCall(self.call_config, self.offer)
        self.phone: IncomingCall | None = None
        self.wire: list[Datagram] = []
        self.engine_events: list[tuple[float, uac.Output]] = []
        self.phone_events: list[tuple[float, uas.Output]] = []
        self._started = False
        self.last_action = 0.0  # when a scheduled action last ran
        self._queue: deque[tuple[str, SendTo]] = deque()
        self._actions: list[tuple[float, int, str, str, dict[str, Any]]] = []
        self._order = itertools.count()
        self._plans: dict[str, list[tuple[float, str, str, dict[str, Any]]]] = {}
        self._fired: set[str] = set()

    # -- driving ------------------------------------------------------------------------------
    def at(self, time: float, side: str, method: str, **kwargs: Any) -> None:
        """Call ``method(now, **kwargs)`` on the engine or the phone at virtual ``time``
        (skipped if the phone does not exist yet)."""
        heapq.heappush(self._actions, (time, next(self._order), side, method, kwargs))

    def on(self, trigger: str, delay: float, side: str, method: str, **kwargs: Any) -> None:
        """Like :meth:`at`, ``delay`` seconds after the first ``trigger`` event."""
        self._plans.setdefault(trigger, []).append((delay, side, method, kwargs))

    def run(self, until: float | None = None, max_steps: int = 20_000) -> float:
        """Deliver and fire timers until nothing is left to do (or ``until``); the time."""
        if not self._started:
            self._started = True
            self._emit("engine", self.engine.start(self.now))
        for _ in range(max_steps):
            self._pump()
            times = [t for t in (self.engine.deadline, self.phone.deadline if self.phone else None,
                                 self._actions[0][0] if self._actions else None) if t is not None]
            if not times or (until is not None and min(times) > until):
                self.now = max(self.now, until or self.now)
                return self.now
            self.now = max(self.now, min(times))
            while self._actions and self._actions[0][0] <= self.now:
                # Actions due at one instant all send before any delivery: they cross.
                _, _, side, method, kwargs = heapq.heappop(self._actions)
                self._act(side, method, kwargs)
            if self.engine.deadline is not None and self.engine.deadline <= self.now:
                self._emit("engine", self.engine.on_timer(self.now))
            if self.phone and self.phone.deadline is not None and self.phone.deadline <= self.now:
                self._emit("phone", self.phone.on_timer(self.now))
        raise AssertionError(f"no quiescence after {max_steps} steps: {self.wire[-10:]}")

    def act(self, side: str, method: str, **kwargs: Any) -> None:
        """Call ``method(now, **kwargs)`` on one side now and deliver what it sends."""
        self._act(side, method, kwargs)
        self._pump()

    # -- looking at the result ----------------------------------------------------------------
    def events(self, side: str, kind: type | None = None) -> list[Any]:
        """The events one side reported (of type ``kind``), without their times."""
        found = self.engine_events if side == "engine" else self.phone_events
        return [e for _, e in found if kind is None or isinstance(e, kind)]

    def time_of(self, side: str, kind: type) -> float:
        found = self.engine_events if side == "engine" else self.phone_events
        return next(t for t, e in found if isinstance(e, kind))

    def sent(self, match: Predicate, *, delivered: bool | None = None) -> list[Datagram]:
        """Datagrams ``match`` accepts (only the delivered or the lost ones if asked)."""
        return [d for d in self.wire if match(d) and (delivered is None or d.dropped != delivered)]

    @property
    def quiet(self) -> bool:
        """Nothing in flight, no action pending, no timer running on either side."""
        return (not self._queue and not self._actions and self.engine.deadline is None
                and (self.phone is None or self.phone.deadline is None))

    # -- plumbing ------------------------------------------------------------------------------
    def _emit(self, side: str, outputs: list[Any]) -> None:
        log = self.engine_events if side == "engine" else self.phone_events
        for output in outputs:
            if isinstance(output, SendTo):
                self._queue.append((side, output))
                continue
            log.append((self.now, output))
            trigger = {uas.IncomingProgress: "offered", uas.CallConfirmed: "confirmed",
                       uac.CallAnswered: "answered"}.get(type(output))
            if trigger == "offered" and output.stage != "offered":
                trigger = None
            if trigger and trigger not in self._fired:
                self._fired.add(trigger)
                for delay, who, method, kwargs in self._plans.get(trigger, []):
                    self.at(self.now + delay, who, method, **kwargs)

    def _act(self, side: str, method: str, kwargs: dict[str, Any]) -> None:
        core: OutboundCall | IncomingCall | None = self.engine if side == "engine" else self.phone
        if core is not None:
            self.last_action = self.now
            self._emit(side, getattr(core, method)(self.now, **kwargs))

    def _pump(self) -> None:
        while self._queue:
            side, out = self._queue.popleft()
            expected = PHONE if side == "engine" else ENGINE
            assert out.addr == expected, f"{side} sent to {out.addr}, not {expected}"
            datagram = Datagram(len(self.wire) + 1, self.now, side, parse_message(out.data))
            if self.drop(datagram):
                self.wire.append(Datagram(datagram.n, self.now, side, datagram.message, True))
                continue
            self.wire.append(datagram)
            for _ in range(2 if self.duplicate(datagram) else 1):
                # Each delivery parses the bytes again, as a socket would hand them over.
                self._deliver(side, parse_message(out.data))

    def _deliver(self, sender: str, message: SipMessage) -> None:
        if sender == "phone":
            self._emit("engine", self.engine.receive(message, self.now, PHONE))
        elif self.phone is not None:
            self._emit("phone", self.phone.receive(message, self.now, ENGINE))
        elif isinstance(message, SipRequest) and message.method == "INVITE":
            self.phone = IncomingCall(message, ENGINE, self.phone_config)
            self._emit("phone", self.phone.start(self.now))
        # anything else before the first INVITE arrived has nobody to go to: lost
