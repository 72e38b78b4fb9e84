"""AMI messages: the actions we send and the banner, responses and events Asterisk sends.

AMI framing (seen in every tests/transcripts/asterisk/ami_* transcript): lines end ``\\r\\n``, a
message is ``Key: value`` lines ended by an empty line. Header names repeat (``Output:`` once per
line of Command output, ``Variable:`` once per variable), so fields are an ordered tuple of
(name, value) pairs, never a dict. A value is everything after ``Key:`` minus one space: Asterisk
writes ``Key: value`` and ``Key: `` for an empty value, and some values start with spaces of
their own (``Value:   minrxlost=…`` in ami_originate_pjsip_sipp_answer).

Received messages keep their header block as text (``raw``) and find fields in it on demand:
most events are read only for their name, and finding one header in a few hundred characters is
cheaper than splitting every line of every event. Look-ups try the exact name first (Asterisk's
own spelling), then any case (Asterisk matches header names case-insensitively).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Self

from ...errors import ProtocolError

__all__ = ["Action", "Banner", "ConnectionClosed", "Event", "EventListResult", "Fields",
           "Received", "Response", "decode_block", "header_value", "new_event"]

Fields = tuple[tuple[str, str], ...]
"""Header fields in order, as (name, value); one entry per header line."""

_NAME = re.compile(r"[!-9;-~]+")  # a header name or action name: printable ASCII, no ':' or space
_MASKED = frozenset({"secret", "key"})  # Login's password and MD5 key: never shown in a repr
_RESERVED = frozenset({"action", "actionid"})  # written by Action itself, once each


def decode_block(data: bytes) -> str:
    """Text of a message's bytes: UTF-8, or Latin-1 when they are not valid UTF-8.

    Asterisk passes channel data through as bytes (a CallerIDName from a SIP display name, a
    dialplan variable), so a peer may send any byte. Latin-1 maps each byte to one character:
    no error, nothing lost (``text.encode("latin-1")`` gives the bytes back), and unlike
    surrogate escapes the text can be stored or encoded as UTF-8 later.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def header_value(raw: str, key: str) -> str | None:
    """The value of the first ``key`` line in a header block (exact spelling first, then any
    case), or None when there is none."""
    probe = key + ":"
    if raw.startswith(probe):
        start = len(probe)
    else:
        at = raw.find("\r\n" + probe)
        if at < 0:
            return _header_any_case(raw, key)
        start = at + 2 + len(probe)
    end = raw.find("\r\n", start)
    value = raw[start:] if end < 0 else raw[start:end]
    return value[1:] if value[:1] == " " else value


def _header_any_case(raw: str, key: str) -> str | None:
    if raw.isascii() and key.isascii():  # lower() keeps ASCII offsets: find the line in C
        at = ("\r\n" + raw.lower()).find("\r\n" + key.lower() + ":")
        return None if at < 0 else header_value(raw[at:], raw[at:at + len(key)])
    want = key.lower()
    return next((value for name, value in _split_fields(raw) if name.lower() == want), None)


def _split_fields(raw: str) -> Fields:
    fields = []
    for line in raw.split("\r\n"):
        # A line without ':' (never sent by Asterisk 22) reads as a name with an empty value.
        key, _, value = line.partition(":")
        fields.append((key, value[1:] if value[:1] == " " else value))
    return tuple(fields)


class _FieldAccess:
    """Header look-ups over a received message's ``raw`` header block."""

    __slots__ = ()
    raw: str

    @property
    def fields(self) -> Fields:
        """Every header line as (name, value), in order, repeated names included."""
        return _split_fields(self.raw)

    def get(self, key: str) -> str | None:
        """The value of the first header named ``key``, or None: the first spelled exactly so,
        else the first in any case."""
        return header_value(self.raw, key)

    def get_all(self, key: str) -> list[str]:
        """The values of every header named ``key`` (any case), in order."""
        want = key.lower()
        return [value for name, value in _split_fields(self.raw) if name.lower() == want]


@dataclass(frozen=True, slots=True, repr=False)
class Banner:
    """The greeting line: ``Asterisk Call Manager/11.0.0`` (the AMI version, not Asterisk's)."""

    product: str
    version: str

    def __repr__(self) -> str:
        return f"<Banner {self.product}/{self.version}>"


@dataclass(frozen=True, slots=True, repr=False)
class Event(_FieldAccess):
    """An event (``Event: Name`` …). ``raw`` is its header block without the final empty line."""

    name: str
    raw: str

    @property
    def action_id(self) -> str | None:
        """The ActionID it carries (list items, OriginateResponse), or None."""
        return header_value(self.raw, "ActionID")

    def __repr__(self) -> str:
        return f"<Event {self.name} uniqueid={self.get('Uniqueid')!r}>"


# Event(name, raw) without the frozen dataclass __init__ (an object.__setattr__ call per field):
# the slot descriptors set the two fields directly, a third of the cost of building an event.
_event_new = object.__new__
_set_event_name = vars(Event)["name"].__set__
_set_event_raw = vars(Event)["raw"].__set__


def new_event(name: str, raw: str) -> Event:
    """``Event(name, raw)``, built faster (the receive loop builds one per message)."""
    event: Event = _event_new(Event)
    _set_event_name(event, name)
    _set_event_raw(event, raw)
    return event


@dataclass(frozen=True, slots=True, repr=False)
class Response(_FieldAccess):
    """The response to an action: ``status`` is ``Success``, ``Error``, ``Goodbye``…

    ``action`` is the name of the action of ours it answers, matched by ActionID; None when the
    ActionID is absent or is not one we are waiting for (sent without one, forgotten after a
    timeout, or from someone else): such a response answers nothing and is only reported.
    """

    status: str
    action_id: str | None
    action: str | None
    raw: str

    @property
    def success(self) -> bool:
        """True for ``Response: Success``."""
        return self.status == "Success"

    @property
    def message(self) -> str | None:
        """The ``Message:`` text (``Authentication accepted``, ``No such channel``…)."""
        return header_value(self.raw, "Message")

    @property
    def output(self) -> tuple[str, ...]:
        """Command output lines: Asterisk 22 sends one ``Output:`` header per line, after
        ``Message: Command output follows`` (no ``Response: Follows`` any more)."""
        return tuple(self.get_all("Output"))

    def __repr__(self) -> str:
        return f"<Response {self.status} to {self.action} id={self.action_id!r}>"


@dataclass(frozen=True, slots=True, repr=False)
class EventListResult:
    """A list action's whole answer, delivered once complete: the response
    (``EventList: start``), the item events, and the closing ``XxxComplete`` event
    (``EventList: Complete``, ``ListItems: N``)."""

    response: Response
    items: tuple[Event, ...]
    complete: Event

    @property
    def action_id(self) -> str | None:
        """The list action's ActionID."""
        return self.response.action_id

    @property
    def action(self) -> str | None:
        """The list action's name (``CoreShowChannels``…)."""
        return self.response.action

    def __repr__(self) -> str:
        return f"<EventListResult {self.action} items={len(self.items)} id={self.action_id!r}>"


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (``receive_data(b"")``). ``unanswered``: ActionIDs still
    waiting for their answer; ``truncated``: the stream ended inside a message."""

    unanswered: tuple[str, ...]
    truncated: bool


Received = Banner | Response | EventListResult | Event | ConnectionClosed
"""What :meth:`AmiConnection.receive_data` returns."""


@dataclass(frozen=True, slots=True, repr=False)
class Action:
    """An action to send: ``Action: name``, ``ActionID: action_id`` (when set), then ``fields``.

    Built values are checked at once: the action name and each field name must be printable
    ASCII without ':' or space, and no value may hold CR or LF, so a value from a scenario or
    an API call can never add a header or end the message early (header injection). Errors
    name the field, never its value. ``Secret`` and ``Key`` values never appear in the repr.
    """

    name: str
    fields: Fields = ()
    action_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or _NAME.fullmatch(self.name) is None:
            raise ValueError("AMI action name must be printable ASCII without ':' or space")
        if self.action_id is not None and (not self.action_id or _has_crlf(self.action_id)):
            raise ValueError("ActionID must be non-empty without CR or LF")
        fields = tuple(self.fields)
        for key, value in fields:
            if not isinstance(key, str) or _NAME.fullmatch(key) is None:
                raise ValueError(f"AMI field name {key!r} is not printable ASCII without ':'")
            if key.lower() in _RESERVED:
                raise ValueError(f"field {key!r}: use Action's name / action_id instead")
            if not isinstance(value, str) or _has_crlf(value):
                raise ValueError(f"value of AMI field {key!r} is not a string without CR or LF")
        object.__setattr__(self, "fields", fields)

    @classmethod
    def build(cls, name: str, *, action_id: str | None = None, **fields: object) -> Self:
        """An action from keyword fields in order: a list or tuple value repeats the header
        (``Variable=["A=1", "B=2"]``), None leaves it out, True/False are ``true``/``false``,
        anything else is ``str(value)``."""
        pairs: list[tuple[str, str]] = []
        for key, value in fields.items():
            for item in value if isinstance(value, list | tuple) else (value,):
                if item is not None:
                    pairs.append((key, _text(item)))
        return cls(name, tuple(pairs), action_id)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse one action's bytes (as Asterisk would read them; the final empty line may be
        there or not). Raises ProtocolError for anything :meth:`build` would not produce.
        ``bytes()`` gives the same bytes back when ActionID, if any, is the second line."""
        data = bytes(data)
        if data.endswith(b"\r\n\r\n"):
            data = data[:-4]
        name: str | None = None
        action_id: str | None = None
        fields: list[tuple[str, str]] = []
        offset = 0
        for raw_line in data.split(b"\r\n"):
            key, colon, value = decode_block(raw_line).partition(":")
            value = value[1:] if value[:1] == " " else value
            if not colon:
                raise ProtocolError("ami", offset, "action line without ':'")
            if name is None:
                if key.lower() != "action":
                    raise ProtocolError("ami", offset, "an action starts with 'Action:'")
                name = value
            elif key.lower() == "actionid" and action_id is None:
                action_id = value
            else:
                fields.append((key, value))
            offset += len(raw_line) + 2
        try:
            return cls(name or "", tuple(fields), action_id)
        except ValueError as exc:
            raise ProtocolError("ami", 0, f"bad action: {exc}") from exc

    def get(self, key: str) -> str | None:
        """The value of the first field named ``key`` (any case), or None."""
        want = key.lower()
        return next((value for name, value in self.fields if name.lower() == want), None)

    def get_all(self, key: str) -> list[str]:
        """The values of every field named ``key`` (any case), in order."""
        want = key.lower()
        return [value for name, value in self.fields if name.lower() == want]

    def with_action_id(self, action_id: str) -> Self:
        """The same action with ``action_id`` set."""
        return replace(self, action_id=action_id)

    def __bytes__(self) -> bytes:
        lines = [f"Action: {self.name}"]
        if self.action_id is not None:
            lines.append(f"ActionID: {self.action_id}")  # 2nd line, as responses echo it
        lines += [f"{key}: {value}" for key, value in self.fields]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def __repr__(self) -> str:
        shown = " ".join(f"{key}={'***' if key.lower() in _MASKED else repr(value)}"
                         for key, value in self.fields)
        return f"<Action {self.name} id={self.action_id!r}{' ' if shown else ''}{shown}>"


def _has_crlf(text: str) -> bool:
    return "\r" in text or "\n" in text


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
