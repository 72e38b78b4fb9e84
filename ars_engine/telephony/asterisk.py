"""The Asterisk backend: calls originated over AMI, scenarios run over FastAGI.

A call, from :meth:`AsteriskBackend.dial`:

1. The FastAGI server is told to expect the call (by its ChannelId, which Asterisk makes the
   channel's Uniqueid and sends as ``agi_uniqueid``), *then* AMI originates it with
   ``Async: true`` into the dialplan context that hands answered calls to FastAGI
   (``asterisk/extensions.conf``: ``ars-out``).
2. Whichever comes first decides: the call's FastAGI session (answered: an
   :class:`~.agi.channel.AgiChannel` is returned for the scenario) or the Originate's result
   (not answered: busy, no answer… from the Hangup cause and OriginateResponse, the same outcomes
   as the SIP backend). If the AMI connection drops before either, the backend keeps waiting
   for the FastAGI session until the ring timeout: an answered call is never lost because the
   dialer's connection blinked.
3. The scenario runs on the AGI channel; closing the channel closes the FastAGI socket, and the
   dialplan hangs up. AMI and the AGI session are independent: an AMI reconnect mid-call does
   not touch a running scenario.

Prompts are written as 8 kHz signed-linear files into ``sounds_dir`` (which Asterisk reads at
the same path); prompts built from call parameters get random per-call names and are deleted
with the call (:mod:`.agi.sounds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChannelError
from .agi.channel import AgiChannel
from .agi.server import AgiConnection, ExpectedCall, FastAgiServer
from .agi.sounds import SoundFiles
from .ami.client import AmiClient, AmiSettings
from .ami.originate import OriginateHandle, OriginateResult, OriginateStatus
from .outcomes import CallAttempt, Outcome

__all__ = ["AsteriskBackend", "AsteriskChannel", "AsteriskSettings"]

log = logging.getLogger("ars_engine.asterisk")

AGI_AFTER_ANSWER = 10.0  # seconds an answered call may take to reach FastAGI (dialplan, load)
SWEEP_AGE = 24 * 3600.0  # per-call prompt files left by a crash are removed after a day


@dataclass(frozen=True, slots=True)
class AsteriskSettings:
    """Where the AMI is, where our FastAGI server listens, and how calls are dialed.

    ``dial`` turns what ``dial(target)`` is given into an Asterisk dial string:
    ``"PJSIP/{target}@carrier"`` for numbers through a trunk, ``"{target}"`` to pass dial
    strings (``PJSIP/softphone``, ``Local/s@callee``) through."""

    ami: AmiSettings
    sounds_dir: Path
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    agi_allowed_hosts: tuple[str, ...] | None = ("127.0.0.1",)
    context: str = "ars-out"
    exten: str = "s"
    dial: str = "{target}"
    answer_timeout: float = 30.0
    recordings_dir: Path | None = None
    caller_id: str | None = None

    def dial_string(self, target: str) -> str:
        if not target or any(c in target for c in "\r\n,&"):
            # ',' and '&' would add Dial options or parallel legs in Asterisk's syntax
            raise ValueError("the call target is empty or contains ',', '&' or a line break")
        return self.dial.format(target=target)


class AsteriskChannel(AgiChannel):
    """The channel of an answered call. :meth:`close` ends the call (the FastAGI socket
    closes; the dialplan hangs up) and releases its registration with the FastAGI server.
    ``originate`` keeps following the call on AMI (its Hangup cause, when the AMI is up)."""

    def __init__(self, connection: AgiConnection, sounds: SoundFiles, *, call_id: str,
                 expected: ExpectedCall, originate: OriginateHandle, backend: AsteriskBackend,
                 recordings_dir: Path | None, answered_at: float) -> None:
        super().__init__(connection, sounds, recordings_dir=recordings_dir, call_id=call_id,
                         answered_at=answered_at)
        self.originate = originate
        self._expected = expected
        self._backend = backend
        self._released = False

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if not self._released:
                self._released = True
                self._backend._calls.discard(self)
                await self._expected.__aexit__(None, None, None)


class AsteriskBackend:
    """Places calls through one Asterisk. ``async with AsteriskBackend(settings) as b``."""

    def __init__(self, settings: AsteriskSettings) -> None:
        self.settings = settings
        self.ami = AmiClient(settings.ami)
        self.agi = FastAgiServer(settings.agi_host, settings.agi_port,
                                 allowed_hosts=settings.agi_allowed_hosts)
        self.sounds = SoundFiles(settings.sounds_dir)
        self._calls: set[AsteriskChannel] = set()  # answered calls not yet closed

    async def __aenter__(self) -> AsteriskBackend:
        await asyncio.to_thread(self.sounds.prepare)
        await asyncio.to_thread(self.sounds.sweep, SWEEP_AGE)
        await self.agi.__aenter__()
        try:
            await self.ami.__aenter__()
        except BaseException:
            await self.agi.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for channel in list(self._calls):
                await channel.close()
        finally:
            try:
                await self.ami.close()
            finally:
                await self.agi.__aexit__(None, None, None)

    async def dial(self, target: str, *, call_id: str | None = None,
                   variables: Mapping[str, str] | None = None,
                   on_progress: Callable[[int], None] | None = None) -> CallAttempt:
        """Call ``target`` (see :attr:`AsteriskSettings.dial`); return when it is answered
        (``channel`` set: run the scenario, then close it) or has failed. ``variables`` are
        extra channel variables (``__NAME`` to reach a Local channel's far half).
        ``on_progress`` is accepted for the Dialer interface; this backend does not report
        ringing yet (the AMI Newstate events would tell)."""
        s = self.settings
        call_id = call_id or uuid.uuid4().hex
        try:
            dial_string = s.dial_string(target)
        except ValueError as exc:
            return CallAttempt(Outcome.FAILED, None, str(exc))
        expected = self.agi.expect(call_id)
        await expected.__aenter__()
        try:
            attempt = await self._place(call_id, dial_string, expected, dict(variables or {}))
        except BaseException:
            await expected.__aexit__(None, None, None)
            raise
        if attempt.channel is None:
            await expected.__aexit__(None, None, None)
        return attempt

    async def _place(self, call_id: str, dial_string: str, expected: ExpectedCall,
                     variables: dict[str, str]) -> CallAttempt:
        s = self.settings
        try:
            handle = await self.ami.originate(
                dial_string, context=s.context, exten=s.exten, ring_timeout=s.answer_timeout,
                channel_id=call_id, caller_id=s.caller_id,
                variables={"ARS_CALL_ID": call_id, **variables})
        except ChannelError as exc:  # not connected to the AMI: nothing was dialed
            return CallAttempt(Outcome.NETWORK_ERROR, None, f"AMI: {exc}")
        arrival = asyncio.ensure_future(expected.connection(timeout=None))
        result = asyncio.ensure_future(handle.result())
        try:
            connection = await self._answered(arrival, result, s.answer_timeout)
        except BaseException:
            with contextlib.suppress(ChannelError):  # AMI down: the original error matters
                await handle.cancel()  # the dial was cancelled: hang the call up if it rings
            raise
        finally:
            for task in (arrival, result):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        if connection is not None:
            channel = AsteriskChannel(connection, self.sounds, call_id=call_id,
                                      expected=expected, originate=handle, backend=self,
                                      recordings_dir=s.recordings_dir,
                                      answered_at=asyncio.get_running_loop().time())
            self._calls.add(channel)
            return CallAttempt(Outcome.ANSWERED, None, "answered", channel)
        outcome = result.result() if result.done() and not result.cancelled() else None
        if outcome is None or outcome.status not in (OriginateStatus.FAILURE,
                                                     OriginateStatus.REFUSED):
            await self._hang_up_leftover(call_id)
        return _failed_attempt(outcome)

    async def _hang_up_leftover(self, call_id: str) -> None:
        """No FastAGI session and no clear failure (answered elsewhere in the dialplan, or the
        AMI was lost while it rang): make sure no channel of this call stays up in Asterisk."""
        try:
            async with asyncio.timeout(self.settings.ami.action_timeout):
                await self.ami.wait_connected()
                await self.ami.hangup(call_id)
        except (ChannelError, TimeoutError) as exc:
            log.warning("call %s: could not hang up its leftover channel: %s", call_id,
                        type(exc).__name__)

    async def _answered(self, arrival: asyncio.Future[AgiConnection],
                        result: asyncio.Future[OriginateResult], ring: float
                        ) -> AgiConnection | None:
        """The call's FastAGI connection, or None once the Originate failed. A lost AMI
        connection does not decide: the FastAGI session may still come (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring + AGI_AFTER_ANSWER
        waiting: set[asyncio.Future[object]] = {arrival, result}  # type: ignore[arg-type]
        while True:
            timeout = deadline - loop.time()
            if timeout <= 0:
                return None
            done, _ = await asyncio.wait(waiting, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if arrival in done:
                return arrival.result() if not arrival.exception() else None
            if result in done:
                waiting.discard(result)
                r = result.result()
                if r.status is OriginateStatus.FAILURE or r.status is OriginateStatus.REFUSED:
                    return None
                if r.status is OriginateStatus.SUCCESS:
                    # Answered: the channel is on its way to FastAGI.
                    deadline = min(deadline, loop.time() + AGI_AFTER_ANSWER)
                # CONNECTION_LOST / NO_RESPONSE: unknown; keep waiting for FastAGI.


def _failed_attempt(result: OriginateResult | None) -> CallAttempt:
    if result is None:
        return CallAttempt(Outcome.NETWORK_ERROR, None, "no FastAGI session and no result")
    if result.status is OriginateStatus.SUCCESS:
        return CallAttempt(Outcome.FAILED, None,
                           "answered but no FastAGI session arrived: check that the dialplan "
                           "context hands the call to the engine's FastAGI address",
                           cause=result.hangup_cause)
    if not result.known:
        return CallAttempt(Outcome.NETWORK_ERROR, None,
                           f"outcome unknown: {result.message or result.status.value}")
    cause = result.hangup_cause
    what = f"cause {cause} ({result.hangup_cause_txt})" if cause is not None else \
        f"reason {result.reason}"
    if result.status is OriginateStatus.REFUSED:
        what = f"refused: {result.message}"
    return CallAttempt(result.outcome, None, f"Asterisk: {what}", cause=cause)
