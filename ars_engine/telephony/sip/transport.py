"""The asyncio edge of the SIP cores: one UDP socket, calls routed by Call-ID, timers run.

A malformed datagram is logged and dropped; it never stops the socket (STYLE rule 5). Each call
has a driver that owns one timer task (cancelled and awaited when the call ends: no
fire-and-forget tasks, no call_later chains).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ...errors import ProtocolError
from . import uas
from .call import CallAnswered, CallEnded, CallProgress, OutboundCall, SendTo
from .keepalive import TrunkMonitor, TrunkStatus
from .message import (
    SipMessage,
    SipRequest,
    SipResponse,
    is_keepalive,
    parse_message,
    response_to,
)
from .reinvite import ReInvite, ReInviteAcked

log = logging.getLogger("ars_engine.sip")

Addr = tuple[str, int]


class SipEndpoint(asyncio.DatagramProtocol):
    """One UDP socket for SIP; messages go to the call with their Call-ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Addr = ("", 0)
        self.calls: dict[str, Callable[[SipMessage, Addr], None]] = {}
        self.bad_datagrams = 0
        self.on_new_request: Callable[[SipRequest, Addr], None] | None = None
        self.closed = asyncio.get_running_loop().create_future()  # set when the socket is shut

    @classmethod
    async def open(cls, host: str, port: int = 0) -> SipEndpoint:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(cls, local_addr=(host, port))
        protocol.transport = transport
        protocol.local = transport.get_extra_info("sockname")[:2]
        return protocol

    def send(self, data: bytes, addr: Addr) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if is_keepalive(data):
            return
        try:
            message = parse_message(data)
        except ProtocolError as exc:
            self.bad_datagrams += 1
            log.warning("dropped a malformed SIP datagram from %s:%s: %s", addr[0], addr[1], exc)
            return
        call_id = message.call_id or ""
        handler = self.calls.get(call_id)
        if handler is not None:
            handler(message, addr[:2])
        elif isinstance(message, SipRequest) and self.on_new_request is not None:
            self.on_new_request(message, addr[:2])
        elif isinstance(message, SipRequest) and message.method != "ACK":
            self.send(stateless_reply(message, 481, "Call/Transaction Does Not Exist"), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)

    def close(self) -> None:
        """Start closing the socket (asyncio closes it on the next loop pass; await
        :meth:`aclose` to know the port is free again)."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def aclose(self) -> None:
        """Close the socket and wait until it is shut (its port can be bound again)."""
        self.close()
        await asyncio.shield(self.closed)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def stateless_reply(request: SipRequest, status: int, reason: str) -> bytes:
    """A response to ``request`` outside any call (481 for a stray request, 200 to OPTIONS)."""
    return bytes(response_to(request, status, reason))


class _CoreDriver:
    """What every driver shares: the Call-ID route on the endpoint, one owned timer task
    (:func:`run_timers`) and :meth:`close`. Subclasses implement :meth:`apply`."""

    def __init__(self, endpoint: SipEndpoint, core: _TimedCore, call_id: str) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self._core = core
        self._call_id = call_id
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False

    def apply(self, outputs: Sequence[Any]) -> None:
        raise NotImplementedError

    def _run(self, first: Sequence[Any], name: str) -> None:
        """Route the Call-ID here, carry out the core's first outputs, start its timers."""
        self.endpoint.calls[self._call_id] = self._receive
        self.apply(first)
        self._timer = self.loop.create_task(
            run_timers(self._core, self._wake, lambda: self._closed, self.apply), name=name)

    def _receive(self, message: SipMessage, source: Addr) -> None:
        self.apply(self._core.receive(message, self.loop.time(), source))  # type: ignore[attr-defined]

    async def close(self) -> None:
        self.endpoint.calls.pop(self._call_id, None)
        # The flag, not only cancel(): on 3.11 a cancel racing the wake-up event can be
        # swallowed by the wait inside the loop (gh-86296), which then sleeps until Timer D.
        self._closed = True
        self._wake.set()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None


class OutboundCallDriver(_CoreDriver):
    """Runs one :class:`OutboundCall` on a :class:`SipEndpoint`.

    ``answered`` resolves with CallAnswered or (when the call failed) CallEnded; ``ended``
    resolves with CallEnded. ``progress`` lists the 1xx seen.

    ``session_update`` answers the peer's re-INVITEs: it gets the offer (b"" for an offerless
    re-INVITE) and returns the SDP for our 200, or None to refuse with 488; it gets the SDP of
    the ACK (the answer to our offer) with ``acked=True`` and returns None. Without one every
    re-INVITE is refused (the session stays as it was).
    """

    def __init__(self, endpoint: SipEndpoint, core: OutboundCall) -> None:
        super().__init__(endpoint, core, core.call_id)
        self.core = core
        self.answered: asyncio.Future[CallAnswered | CallEnded] = self.loop.create_future()
        self.ended: asyncio.Future[CallEnded] = self.loop.create_future()
        self.progress: list[CallProgress] = []
        self.on_progress: Callable[[int], None] | None = None  # gets each 1xx status
        self.session_update: Callable[[bytes, bool], bytes | None] | None = None

    def start(self) -> None:
        self._run(self.core.start(self.loop.time()), f"sip-{self.core.call_id}")

    async def hangup(self) -> CallEnded:
        """CANCEL or BYE, then wait for the call to end (bounded by the SIP timers)."""
        if not self.ended.done():
            self.apply(self.core.hangup(self.loop.time()))
        return await asyncio.shield(self.ended)

    def apply(self, outputs: Sequence[object]) -> None:
        for out in outputs:
            if isinstance(out, SendTo):
                self.endpoint.send(out.data, out.addr)
            elif isinstance(out, CallProgress):
                self.progress.append(out)
                if self.on_progress is not None:
                    self.on_progress(out.status)
            elif isinstance(out, CallAnswered):
                if not self.answered.done():
                    self.answered.set_result(out)
            elif isinstance(out, CallEnded):
                if not self.answered.done():
                    self.answered.set_result(out)
                if not self.ended.done():
                    self.ended.set_result(out)
            elif isinstance(out, ReInvite):
                self.apply(self._answer_reinvite(out.offer))
            elif isinstance(out, ReInviteAcked) and out.sdp and self.session_update is not None:
                self._update_session(out.sdp, acked=True)
        self._wake.set()  # deadlines may have moved

    def _answer_reinvite(self, offer: bytes) -> list[object]:
        now = self.loop.time()
        sdp = self._update_session(offer, acked=False) if self.session_update else None
        if sdp is None:
            return list(self.core.reject_reinvite(now))
        return list(self.core.answer_reinvite(sdp, now))

    def _update_session(self, sdp: bytes, *, acked: bool) -> bytes | None:
        assert self.session_update is not None
        try:
            return self.session_update(sdp, acked)
        except Exception:  # a broken offer must not kill the call: refuse it, keep the session
            log.warning("call %s: re-INVITE SDP not usable", self.core.call_id, exc_info=True)
            return None


UasFinal = uas.CallConfirmed | uas.CallCanceled | uas.CallEnded


class IncomingCallDriver(_CoreDriver):
    """Runs one :class:`~.uas.IncomingCall` (the UAS core) on a :class:`SipEndpoint`: routes the
    call's messages to it, runs its timers on one owned task, and records what it reported.

    ``events`` gets every event the core reports (IncomingProgress, CallConfirmed,
    CallCanceled, CallEnded) in order; ``confirmed`` resolves with CallConfirmed, or with the
    CallCanceled / CallEnded that came first; ``ended`` with CallCanceled or CallEnded.
    """

    def __init__(self, endpoint: SipEndpoint, core: uas.IncomingCall) -> None:
        super().__init__(endpoint, core, core.call_id)
        self.core = core
        self.events: asyncio.Queue[uas.Output] = asyncio.Queue()
        self.confirmed: asyncio.Future[UasFinal] = self.loop.create_future()
        self.ended: asyncio.Future[uas.CallCanceled | uas.CallEnded] = self.loop.create_future()

    def start(self) -> None:
        """Register the Call-ID, send 100 Trying (or the 401) and start the timer task."""
        self._run(self.core.start(self.loop.time()), f"sip-uas-{self.core.call_id}")

    def apply(self, outputs: Sequence[uas.Output]) -> None:
        """Carry out what the core returned (from ``ring``, ``answer``, ``reject``…)."""
        for out in outputs:
            if isinstance(out, SendTo):
                self.endpoint.send(out.data, out.addr)
                continue
            self.events.put_nowait(out)
            if isinstance(out, uas.CallConfirmed | uas.CallCanceled | uas.CallEnded) \
                    and not self.confirmed.done():
                self.confirmed.set_result(out)
            if isinstance(out, uas.CallCanceled | uas.CallEnded) and not self.ended.done():
                self.ended.set_result(out)
        self._wake.set()  # deadlines may have moved

    async def finished(self) -> None:
        """Wait until the core has nothing left to resend (Timer G/H, the BYE's Timer F)."""
        while not self.core.finished and not self._closed:
            self._wake.clear()
            await self._wake.wait()



class _TimedCore(Protocol):
    @property
    def deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> list[Any]: ...


async def run_timers(core: _TimedCore, wake: asyncio.Event, closed: Callable[[], bool],
                     apply: Callable[[list[Any]], None]) -> None:
    """Run a sans-I/O core's timers until ``closed()``: sleep to its deadline, or until
    ``wake`` says the deadline may have moved. (``asyncio.timeout``, not ``wait_for``: on 3.11 a
    cancel racing the wake-up can be swallowed by wait_for, gh-86296.)"""
    loop = asyncio.get_running_loop()
    while not closed():
        deadline = core.deadline
        wake.clear()
        if deadline is None:
            await wake.wait()
            continue
        delay = deadline - loop.time()
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await wake.wait()
                continue  # something changed: recompute the deadline
            except TimeoutError:
                pass
        apply(core.on_timer(loop.time()))


class TrunkMonitorDriver(_CoreDriver):
    """Runs a :class:`~ars_engine.telephony.sip.keepalive.TrunkMonitor` on an endpoint;
    ``status`` holds the latest TrunkStatus, ``changed`` is set at every change."""

    def __init__(self, endpoint: SipEndpoint, monitor: TrunkMonitor) -> None:
        super().__init__(endpoint, monitor, monitor.call_id)
        self.monitor = monitor
        self.status: TrunkStatus | None = None
        self.changed = asyncio.Event()

    def start(self) -> None:
        self._run(self.monitor.start(self.loop.time()), "sip-keepalive")

    def _receive(self, message: SipMessage, source: Addr) -> None:
        if isinstance(message, SipResponse):
            self.apply(self.monitor.receive(message, self.loop.time()))

    def apply(self, outputs: Sequence[object]) -> None:
        for out in outputs:
            if isinstance(out, SendTo):
                self.endpoint.send(out.data, out.addr)
            elif isinstance(out, TrunkStatus):
                self.status = out
                log.log(logging.INFO if out.up else logging.WARNING, "trunk %s:%s is %s",
                        self.monitor.trunk[0], self.monitor.trunk[1],
                        "up" if out.up else "down (no answer to OPTIONS)")
                self.changed.set()
        self._wake.set()
