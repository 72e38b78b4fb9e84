"""Typed views of the AMI events the Asterisk backend acts on.

``typed(event)`` returns an :class:`OriginateResponse`, :class:`Hangup`, :class:`DialEnd`,
:class:`Newchannel` or :class:`VarSet` for those events and None for the others; each class also
has ``from_event``. A field these events always carry that is missing, or a number that is not
one, is a ProtocolError (Asterisk broke its own format). Field names and forms are those of the
recorded Asterisk 22 transcripts (tests/transcripts/asterisk/ami_*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ...errors import ProtocolError
from .messages import Event

__all__ = ["DialEnd", "Hangup", "Newchannel", "OriginateResponse", "TypedEvent", "VarSet",
           "typed"]

_UNKNOWN = "<unknown>"  # Asterisk's placeholder for an absent value (Uniqueid, CallerIDNum…)


def _probes(*keys: str) -> tuple[str, ...]:
    return tuple(f"\r\n{key}: " for key in keys)


def _pick(event: Event, probes: tuple[str, ...]) -> list[str | None]:
    """The value after each probe (``\r\nKey: ``), None when absent.

    Typed views read Asterisk's own spelling (exact name, ``": "``); :meth:`Event.get` is the
    forgiving look-up. Probes are listed in the order Asterisk writes the fields, so each is
    looked for after the previous value, then before it: one pass finds them all.
    """
    raw = event.raw
    find = raw.find
    values: list[str | None] = []
    pos = 0
    for probe in probes:
        at = find(probe, pos)
        if at < 0:
            at = find(probe, 0, pos + len(probe))
            if at < 0:
                values.append(None)
                continue
        start = at + len(probe)
        end = find("\r\n", start)
        if end < 0:
            end = len(raw)
        values.append(raw[start:end])
        pos = end
    return values


def _missing(event: Event, probes: tuple[str, ...], values: list[str | None]) -> ProtocolError:
    names = ", ".join(probe[2:-2] for probe, value in zip(probes, values, strict=True)
                      if value is None)
    return ProtocolError("ami", -1, f"{event.name} event without {names}")


def _number(event: Event, key: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ProtocolError("ami", -1, f"{event.name} {key} is not a number")
    return int(text)


def _check(event: Event, name: str) -> None:
    if event.name != name:
        raise ValueError(f"expected a {name} event, got {event.name}")


# The fields read from each event, in the order Asterisk 22 writes them.
_ORIGINATE_RESPONSE = _probes("ActionID", "Response", "Channel", "Reason", "Uniqueid")
_HANGUP = _probes("Channel", "Uniqueid", "Linkedid", "Cause", "Cause-txt")
_DIAL_END = _probes("Channel", "Uniqueid", "DestChannel", "DestUniqueid", "DialStatus")
_NEWCHANNEL = _probes("Channel", "Uniqueid", "Linkedid")
_VAR_SET = _probes("Channel", "Uniqueid", "Variable", "Value")


@dataclass(frozen=True, slots=True)
class OriginateResponse:
    """How an async Originate ended (an Event that carries ``Response:``).

    ``reason`` is Asterisk's last control frame while dialing: 0 failed (no channel, or it
    failed with only a hangup cause to say why), 1 hung up, 3 ringing when the Timeout expired,
    4 answered, 5 busy, 8 congestion. ``channel`` is the real channel name on success and the
    dial string (``PJSIP/softphone``) on failure; ``uniqueid`` is the ChannelId we gave, None
    when Asterisk never made a channel (``Uniqueid: <unknown>``, unknown technology).
    """

    action_id: str | None
    success: bool
    channel: str
    reason: int
    uniqueid: str | None

    @classmethod
    def from_event(cls, event: Event) -> Self:
        """Read an ``OriginateResponse`` event."""
        _check(event, "OriginateResponse")
        values = _pick(event, _ORIGINATE_RESPONSE)
        action_id, response, channel, reason, uniqueid = values
        if response is None or channel is None or reason is None:
            raise _missing(event, _ORIGINATE_RESPONSE[1:4], values[1:4])
        return cls(action_id, response == "Success", channel, _number(event, "Reason", reason),
                   None if uniqueid in (None, _UNKNOWN, "") else uniqueid)


@dataclass(frozen=True, slots=True)
class Hangup:
    """A channel is gone: its Q.850 ``cause`` (0 when Asterisk set none: the AGI hung up,
    ami_originate_pjsip_sipp_answer) and the cause text (``Cause-txt``)."""

    channel: str
    uniqueid: str
    linkedid: str
    cause: int
    cause_txt: str

    @classmethod
    def from_event(cls, event: Event) -> Self:
        """Read a ``Hangup`` event."""
        _check(event, "Hangup")
        values = _pick(event, _HANGUP)
        channel, uniqueid, linkedid, cause, cause_txt = values
        if channel is None or uniqueid is None or linkedid is None or cause is None:
            raise _missing(event, _HANGUP[:4], values[:4])
        return cls(channel, uniqueid, linkedid, _number(event, "Cause", cause), cause_txt or "")


@dataclass(frozen=True, slots=True)
class DialEnd:
    """Dialing a destination ended: ``dial_status`` ANSWER, BUSY, NOANSWER, CANCEL,
    CONGESTION, CHANUNAVAIL…. The dialed channel has the ``Dest`` prefix; a dial made by
    Originate has no calling channel, so ``channel``/``uniqueid`` are None there."""

    dest_channel: str
    dest_uniqueid: str
    dial_status: str
    channel: str | None
    uniqueid: str | None

    @classmethod
    def from_event(cls, event: Event) -> Self:
        """Read a ``DialEnd`` event."""
        _check(event, "DialEnd")
        values = _pick(event, _DIAL_END)
        channel, uniqueid, dest_channel, dest_uniqueid, status = values
        if dest_channel is None or dest_uniqueid is None or status is None:
            raise _missing(event, _DIAL_END[2:], values[2:])
        return cls(dest_channel, dest_uniqueid, status, channel, uniqueid)


@dataclass(frozen=True, slots=True)
class Newchannel:
    """A channel was created; Originate's ``ChannelId`` becomes its ``uniqueid`` (a Local
    channel's ;2 half gets ``OtherChannelId``, or ``<ChannelId>;2`` without one)."""

    channel: str
    uniqueid: str
    linkedid: str

    @classmethod
    def from_event(cls, event: Event) -> Self:
        """Read a ``Newchannel`` event."""
        _check(event, "Newchannel")
        values = _pick(event, _NEWCHANNEL)
        channel, uniqueid, linkedid = values
        if channel is None or uniqueid is None or linkedid is None:
            raise _missing(event, _NEWCHANNEL, values)
        return cls(channel, uniqueid, linkedid)


@dataclass(frozen=True, slots=True)
class VarSet:
    """A channel variable was set (Originate's ``Variable:``s, PLAYBACKSTATUS, AGISTATUS…).
    ``value`` is kept as sent, leading spaces included (RTPAUDIOQOSLOSS)."""

    channel: str | None
    uniqueid: str | None
    variable: str
    value: str

    @classmethod
    def from_event(cls, event: Event) -> Self:
        """Read a ``VarSet`` event."""
        _check(event, "VarSet")
        values = _pick(event, _VAR_SET)
        channel, uniqueid, variable, value = values
        if variable is None or value is None:
            raise _missing(event, _VAR_SET[2:], values[2:])
        return cls(channel, uniqueid, variable, value)


TypedEvent = OriginateResponse | Hangup | DialEnd | Newchannel | VarSet

_TYPED: dict[str, type[OriginateResponse] | type[Hangup] | type[DialEnd] | type[Newchannel]
             | type[VarSet]] = {
    "OriginateResponse": OriginateResponse, "Hangup": Hangup, "DialEnd": DialEnd,
    "Newchannel": Newchannel, "VarSet": VarSet,
}


def typed(event: Event) -> TypedEvent | None:
    """The typed view of ``event`` if the backend reads its kind, else None."""
    cls = _TYPED.get(event.name)
    return None if cls is None else cls.from_event(event)
