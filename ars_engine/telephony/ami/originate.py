"""Following one Async Originate: its handle, its result, and its variables.

Asterisk 22 reports an Async Originate in pieces (tests/transcripts/asterisk/ami_originate_*):
the immediate ``Originate successfully queued`` answers the action; the outcome comes in an
``OriginateResponse`` event carrying the Originate's ActionID; the channel's ``Hangup``
(Uniqueid = ChannelId) carries the Q.850 cause. OriginateResponse and Hangup come in either
order (PJSIP busy: response first; Timer B: Hangup first), so after a Failure the handle
waits up to ``hangup_grace`` for the Hangup's cause. When no channel was made (unknown
technology) no Hangup comes: the OriginateResponse then says ``Uniqueid: <unknown>`` when the
Originate had no ChannelId, but with one (as we always send) it names our ChannelId all the
same (seen with Asterisk 22), so that case costs the grace. Newchannel cannot tell the cases
apart: OriginateResponse is written to the sessions directly, channel events through Stasis,
so their order is not guaranteed under load.

The handle is fed by :class:`~.client.AmiClient`'s reader (``_on_*``) and awaited by the
caller; it never waits longer than the ring timeout plus a grace, and resolves at once when
the AMI connection drops.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from ..outcomes import Outcome, outcome_from_originate
from .events import Hangup, OriginateResponse

__all__ = ["OriginateHandle", "OriginateResult", "OriginateStatus", "escape_variable_value",
           "originate_variables"]


class OriginateStatus(enum.Enum):
    """What is known about an Async Originate.

    SUCCESS / FAILURE: Asterisk's OriginateResponse said so (SUCCESS: answered). REFUSED: the
    Originate action itself was answered ``Response: Error`` (bad parameters, permissions).
    CONNECTION_LOST: the AMI connection dropped (or the client closed) before the
    OriginateResponse; the call may be ringing or up in Asterisk: unknown (a backend that saw
    the call's FastAGI session knows it was answered). NO_RESPONSE: no OriginateResponse by the
    ring timeout + grace on a live connection (should not happen): unknown.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    CONNECTION_LOST = "connection_lost"
    NO_RESPONSE = "no_response"


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """How an Async Originate went: ``success`` None when unknown (see OriginateStatus),
    ``reason`` the OriginateResponse Reason, ``uniqueid`` our ChannelId (None when Asterisk
    says ``<unknown>``), ``channel`` the real channel name on success (the dial string on
    failure), ``hangup_cause`` the Q.850 cause of the originated channel's Hangup when it came
    before the result was known (always, on failure, if a channel was made), ``message`` the
    refusal or what was lost, ``canceled`` whether we hung it up (``OriginateHandle.cancel``)."""

    status: OriginateStatus
    success: bool | None
    reason: int | None
    uniqueid: str | None
    channel: str | None
    hangup_cause: int | None
    hangup_cause_txt: str | None = None
    message: str | None = None
    canceled: bool = False

    @property
    def known(self) -> bool:
        """False when the fate of the call is unknown (connection lost, no response)."""
        return self.success is not None

    @property
    def outcome(self) -> Outcome:
        """The outcome (``outcome_from_originate``); NETWORK_ERROR when unknown."""
        return outcome_from_originate(self.success, self.reason, self.hangup_cause,
                                      canceled=self.canceled)


class OriginateHandle:
    """One Async Originate in flight.

    ``await handle.result()`` resolves once the outcome is known (the OriginateResponse, plus
    on failure the Hangup's cause), the connection drops, or the ring timeout + grace passes:
    it never hangs. ``await handle.wait_hangup()`` waits for the originated channel's Hangup
    (the end of an answered call); None if the connection dropped first. ``await
    handle.cancel()`` hangs the channel up.
    """

    def __init__(self, action_id: str, channel_id: str, other_channel_id: str | None, *,
                 deadline: float, hangup_grace: float,
                 hangup: Callable[[str, int | None], Awaitable[bool]],
                 release: Callable[[OriginateHandle], None]) -> None:
        self.action_id = action_id
        self.channel_id = channel_id
        self.other_channel_id = other_channel_id
        self._deadline = deadline  # loop time by which the OriginateResponse is due
        self._hangup_grace = hangup_grace
        self._hangup_channel = hangup
        self._release = release  # tells the client to stop routing events here
        self._response: OriginateResponse | None = None
        self._hangup: Hangup | None = None
        self._refused: str | None = None
        self._lost: str | None = None
        self._canceled = False
        self._result: OriginateResult | None = None
        self._responded = asyncio.Event()  # OriginateResponse, refusal, or loss
        self._ended = asyncio.Event()  # Hangup, no channel to hang up, or loss

    # -- fed by the client --------------------------------------------------------------------
    def on_response(self, response: OriginateResponse) -> None:
        """The OriginateResponse event."""
        if self._response is None:
            self._response = response
            self._responded.set()
            if response.uniqueid is None:
                self._ended.set()  # no channel was made: no Hangup will come

    def on_hangup(self, hangup: Hangup) -> None:
        """The originated channel's Hangup event."""
        if self._hangup is None:
            self._hangup = hangup
            self._ended.set()

    def on_refused(self, message: str) -> None:
        """The Originate action was answered ``Response: Error``."""
        self._refused = message
        self._responded.set()
        self._ended.set()

    def on_lost(self, reason: str) -> None:
        """The AMI connection dropped, or the client closed."""
        if self._lost is None:
            self._lost = reason
        self._responded.set()
        self._ended.set()

    @property
    def tracking(self) -> bool:
        """True while events for this call are still expected."""
        return not self._ended.is_set()

    # -- for the caller -----------------------------------------------------------------------
    def done(self) -> bool:
        """True once :meth:`result` would return at once."""
        return self._result is not None

    async def result(self) -> OriginateResult:
        """The attempt's result (see the class doc); computed once."""
        if self._result is not None:
            return self._result
        try:
            async with asyncio.timeout_at(self._deadline):
                await self._responded.wait()
        except TimeoutError:
            pass  # NO_RESPONSE below
        if self._response is not None and not self._response.success:
            try:  # the Hangup's cause says more than the Reason (PJSIP busy: Reason 0, cause 17)
                async with asyncio.timeout(self._hangup_grace):
                    await self._ended.wait()
            except TimeoutError:
                pass
        if self._result is None:
            self._result = self._build()
            if self._result.status is not OriginateStatus.SUCCESS:
                self._release(self)  # nothing more to follow
        return self._result

    def _build(self) -> OriginateResult:
        hangup = self._hangup
        cause = hangup.cause if hangup is not None else None
        cause_txt = hangup.cause_txt if hangup is not None else None
        response = self._response
        if response is not None:
            status = OriginateStatus.SUCCESS if response.success else OriginateStatus.FAILURE
            return OriginateResult(status, response.success, response.reason, response.uniqueid,
                                   response.channel, cause, cause_txt, None, self._canceled)
        if self._refused is not None:
            return OriginateResult(OriginateStatus.REFUSED, False, None, None, None, None, None,
                                   self._refused, self._canceled)
        if self._lost is not None:
            return OriginateResult(OriginateStatus.CONNECTION_LOST, None, None, None, None, cause,
                                   cause_txt, self._lost, self._canceled)
        return OriginateResult(OriginateStatus.NO_RESPONSE, None, None, None, None, cause,
                               cause_txt, "no OriginateResponse by the ring timeout",
                               self._canceled)

    @property
    def outcome(self) -> Outcome | None:
        """The outcome, once :meth:`result` has resolved; else None."""
        return None if self._result is None else self._result.outcome

    @property
    def hangup(self) -> Hangup | None:
        """The originated channel's Hangup, if seen."""
        return self._hangup

    async def wait_hangup(self) -> Hangup | None:
        """Wait for the originated channel's Hangup; None if the connection dropped (or the
        client closed) first, or Asterisk made no channel."""
        await self._ended.wait()
        return self._hangup

    async def cancel(self, cause: int | None = None) -> bool:
        """Hang the originated channel up (while ringing, or during the call). True if Asterisk
        hung up a channel, False if it had none by that id (not created yet, or gone). The
        result's outcome is then CANCELED unless the far end had already refused."""
        self._canceled = True
        return await self._hangup_channel(self.channel_id, cause)

    def __repr__(self) -> str:
        state = "done" if self._result is not None else "pending"
        return f"<OriginateHandle {self.channel_id} id={self.action_id!r} {state}>"


_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.()\-]*")
_VARIABLE_SPECIALS = re.compile(r'([\\",()\[\]])')


def escape_variable_value(value: str) -> str:
    """``value`` as the value of one Originate ``Variable: NAME=value`` header.

    Asterisk splits each Variable header like application arguments (manager.c
    ``man_do_variable_value`` → ``AST_STANDARD_APP_ARGS``): a comma starts another variable,
    quotes and backslashes are removed, brackets and parentheses nest. A backslash before each
    of those keeps it literal (round trip checked against Asterisk 22 by
    tests/integration/test_ami_asterisk.py).
    """
    return _VARIABLE_SPECIALS.sub(r"\\\1", value)


def originate_variables(variables: Mapping[str, str] | Iterable[str]
                        ) -> tuple[list[str], list[str]]:
    """(``Variable`` header values, variable names for logs) from a mapping or from
    ``NAME=value`` strings; values are escaped. ValueError names a bad name, never a value."""
    pairs: list[tuple[str, str]] = []
    if isinstance(variables, Mapping):
        pairs = [(str(name), str(value)) for name, value in variables.items()]
    else:
        for item in variables:
            name, equals, value = item.partition("=")
            if not equals:
                raise ValueError("an Originate variable must be NAME=value (one has no '=')")
            pairs.append((name, value))
    fields, names = [], []
    for name, value in pairs:
        if _VARIABLE_NAME.fullmatch(name) is None:
            raise ValueError(f"Originate variable name {name!r} is not a dialplan variable name")
        fields.append(f"{name}={escape_variable_value(value)}")
        names.append(name)
    return fields, names
