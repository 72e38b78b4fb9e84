"""The sans-I/O AMI client connection: bytes in → banner, responses, lists, events; actions → bytes.

Rules of the stream, as recorded from Asterisk 22 (tests/transcripts/asterisk/README.md):

* The connection opens with one banner line, ``Asterisk Call Manager/11.0.0\\r\\n``, and NO empty
  line after it. Every later message is ``Key: value\\r\\n`` lines ended by ``\\r\\n``.
* A message holding ``Event:`` is an event, else one holding ``Response:`` is a response.
  OriginateResponse is an event that also carries ``Response: Success|Failure``, so ``Event``
  is looked for first. Anything else is a ProtocolError.
* A response answers the action whose ActionID it echoes; there is no other way to match them:
  security events (SuccessfulAuth, RequestBadFormat) and call events arrive between and even
  after later responses (ami_main_local_originate, ami_originate_local_noanswer_busy), and a
  response to an action sent without an ActionID carries none. :meth:`AmiConnection.send`
  therefore gives every action an ActionID. A response whose ActionID we are not waiting for
  is still delivered, with ``action=None``.
* A list action (CoreShowChannels…) is answered by ``Response: Success`` with
  ``EventList: start``, item events carrying its ActionID, and an ``XxxComplete`` event with
  ``EventList: Complete``; they are collected and delivered as one :class:`EventListResult`.
  The action stays pending until the list completes.
* Incomplete input waits for more; ``receive_data(b"")`` says the peer closed the connection.
  A message longer than ``max_message_size`` bytes is a ProtocolError (a peer that never ends
  its message must not grow our buffer without bound). After a ProtocolError the stream cannot
  be trusted: every later ``receive_data`` raises and the caller should close the connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType

from ...errors import ProtocolError
from .messages import (
    Action,
    Banner,
    ConnectionClosed,
    Event,
    EventListResult,
    Received,
    Response,
    decode_block,
    header_value,
    new_event,
)

__all__ = ["AmiConnection", "challenge_action", "login_action", "logoff_action",
           "md5_key", "md5_login_action", "ping_action"]

MAX_MESSAGE_SIZE = 1 << 20  # 1 MiB: a CoreShowChannels item is < 1 KiB, a whole list is many
_MAX_BANNER = 1024
_END = b"\r\n\r\n"


class AmiConnection:
    """One AMI client connection's protocol state (the peer is Asterisk's manager).

    ``send(action)`` returns the bytes to write and remembers the action as pending until its
    response; ``receive_data(data)`` returns what the bytes completed, in stream order:
    :class:`Banner` first, then :class:`Response`, :class:`EventListResult` and
    :class:`Event` values, and :class:`ConnectionClosed` at the end.
    """

    __slots__ = ("_banner", "_buffer", "_closed", "_consumed", "_counter", "_expect_banner",
                 "_failure", "_lists", "_pending", "_scan", "action_id_prefix",
                 "max_message_size")

    def __init__(self, *, action_id_prefix: str = "ars-", max_message_size: int = MAX_MESSAGE_SIZE,
                 expect_banner: bool = True) -> None:
        self.action_id_prefix = action_id_prefix
        self.max_message_size = max_message_size
        self._expect_banner = expect_banner
        self._banner: Banner | None = None
        self._buffer = bytearray()
        self._scan = 0  # where to resume looking for the end of a message
        self._consumed = 0  # stream bytes already framed, for error offsets
        self._failure: ProtocolError | None = None
        self._closed = False
        self._counter = 0
        self._pending: dict[str, str] = {}  # ActionID → action name
        self._lists: dict[str, tuple[Response, list[Event]]] = {}  # open lists by ActionID

    # -- state ------------------------------------------------------------------------------------
    @property
    def banner(self) -> Banner | None:
        """The banner, once received."""
        return self._banner

    @property
    def pending(self) -> Mapping[str, str]:
        """Actions sent and not yet answered (open lists included): ActionID → action name."""
        return MappingProxyType(self._pending)

    @property
    def failed(self) -> bool:
        """True once the peer broke the protocol (the connection should be closed)."""
        return self._failure is not None

    @property
    def closed(self) -> bool:
        """True once ``receive_data(b"")`` reported the end of the stream."""
        return self._closed

    # -- sending ----------------------------------------------------------------------------------
    def next_action_id(self) -> str:
        """A new ActionID: ``action_id_prefix`` followed by this connection's counter."""
        self._counter += 1
        return f"{self.action_id_prefix}{self._counter}"

    def with_action_id(self, action: Action) -> Action:
        """``action`` with an ActionID: its own, or a new one. Call it before :meth:`send`
        when the caller must know the ActionID (to wait for the response)."""
        return action if action.action_id is not None else action.with_action_id(
            self.next_action_id())

    def send(self, action: Action) -> bytes:
        """The bytes of ``action`` (given an ActionID when it has none), now pending.

        ValueError if its ActionID is already pending: responses are matched by ActionID, so
        two actions in flight must not share one.
        """
        action = self.with_action_id(action)
        action_id = action.action_id
        assert action_id is not None
        if action_id in self._pending:
            raise ValueError(f"ActionID {action_id!r} is already pending")
        data = bytes(action)
        self._pending[action_id] = action.name
        return data

    def forget(self, action_id: str) -> bool:
        """Stop waiting for ``action_id`` (its timeout expired); a late response is then
        delivered with ``action=None``, late list items as plain events. True if it was
        pending."""
        self._lists.pop(action_id, None)
        return self._pending.pop(action_id, None) is not None

    # -- receiving --------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Received]:
        """Add bytes from the peer (``b""`` at end of stream); return what they complete.

        Bad input raises ProtocolError after what preceded it: if ``data`` completed some
        messages before the error, they are returned and the next call raises.
        """
        if self._failure is not None:
            raise ProtocolError("ami", self._failure.offset,
                                f"stream already failed: {self._failure.message}")
        if self._closed:
            raise RuntimeError("receive_data after the end of the stream")
        out: list[Received] = []
        if not data:
            return self._end_of_stream()
        buf = self._buffer
        buf += data
        try:
            if self._banner is None and self._expect_banner and not self._read_banner(out):
                return out
            cut = buf.rfind(_END, self._scan)
            while cut >= 2 and buf[cut - 2:cut] == b"\r\n":
                # In a run of empty lines the message ends at the first CRLF CRLF, as when
                # the run arrives in pieces; the rest is stray empty lines before the next.
                cut -= 2
            if cut >= 0:
                region = bytes(buf[:cut])
                del buf[:cut + 4]
                self._frame(region, out)
            self._scan = max(0, len(buf) - 3)
            if len(buf) > self.max_message_size + 3:  # +3: a terminator's first bytes
                lead = len(buf) - len(buf.lstrip(b"\r\n"))  # stray empty lines before it
                if len(buf) - lead > self.max_message_size + 3:
                    raise self._too_long(self._consumed + lead)
        except ProtocolError as exc:
            self._failure = exc
            if out:
                return out  # deliver what preceded the error; the next call raises
            raise
        return out

    def _too_long(self, offset: int) -> ProtocolError:
        return ProtocolError("ami", offset, f"message longer than {self.max_message_size} bytes")

    def _read_banner(self, out: list[Received]) -> bool:
        buf = self._buffer
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > _MAX_BANNER:
                raise ProtocolError("ami", 0, "no AMI banner line")
            return False
        line = decode_block(bytes(buf[:end]))
        product, slash, version = line.rpartition("/")
        if not (slash and product.strip() and version) or " " in version:
            raise ProtocolError("ami", 0, "not an AMI banner ('Asterisk Call Manager/x.y.z')")
        del buf[:end + 2]
        self._consumed += end + 2
        self._banner = Banner(product, version)
        out.append(self._banner)
        return True

    def _frame(self, region: bytes, out: list[Received]) -> None:
        """Turn a run of whole messages (CRLF CRLF between them, none at the end) into values."""
        base = self._consumed
        self._consumed += len(region) + 4
        too_long: ProtocolError | None = None
        if len(region) > self.max_message_size:
            # Only then can one message in it be too long: frame the ones before it, as
            # smaller reads would have, then fail at it.
            at = base
            for piece in region.split(_END):
                # Stray empty lines before it are no part of it; a stray CR or LF after it is,
                # as receive_data counts it while the message is incomplete.
                message = piece.lstrip(b"\r\n")
                if len(message) > self.max_message_size:
                    too_long = self._too_long(at + piece.index(message))
                    region = region[:at - base]
                    break
                at += len(piece) + 4
        try:
            blocks = region.decode("utf-8").split("\r\n\r\n")
        except UnicodeDecodeError:  # decode each message on its own, as any chunking would
            blocks = [decode_block(piece) for piece in region.split(_END)]
        pending, lists = self._pending, self._lists
        for index, block in enumerate(blocks):
            if not block:
                continue  # extra CRLF between messages
            if block[0] in "\r\n" or block[-1] in "\r\n":
                block = block.strip("\r\n")
                if not block:
                    continue
            if block.startswith("Event: "):  # the common case, as Asterisk writes every event
                end = block.find("\r\n")
                event = new_event(block[7:] if end < 0 else block[7:end], block)
            else:
                name = header_value(block, "Event")
                if name is None:
                    if not self._response(block, out):
                        pieces = region.split(_END)
                        at = base + sum(len(p) + 4 for p in pieces[:index])
                        at += len(pieces[index]) - len(pieces[index].lstrip(b"\r\n"))
                        raise ProtocolError("ami", at, "message with neither Event nor Response")
                    continue
                event = new_event(name, block)
            if lists:
                action_id = header_value(block, "ActionID")
                if action_id is not None and action_id in lists:
                    response, items = lists[action_id]
                    if header_value(block, "EventList") is None:
                        items.append(event)
                    else:  # the XxxComplete event: EventList: Complete
                        del lists[action_id]
                        pending.pop(action_id, None)
                        out.append(EventListResult(response, tuple(items), event))
                    continue
            out.append(event)
        if too_long is not None:
            raise too_long

    def _response(self, block: str, out: list[Received]) -> bool:
        """Deliver (or hold, for a list) the response in ``block``; False if it is none."""
        status = header_value(block, "Response")
        if status is None:
            return False
        action_id = header_value(block, "ActionID")
        action = None if action_id is None else self._pending.get(action_id)
        response = Response(status, action_id, action, block)
        if action is None or action_id is None:
            out.append(response)
            return True
        stale = self._lists.pop(action_id, None)
        if stale is not None:  # a second response to an open list: give back what it held
            out.extend(stale[1])
        if (header_value(block, "EventList") or "").lower() == "start":
            self._lists[action_id] = (response, [])
        else:
            del self._pending[action_id]
            out.append(response)
        return True

    def _end_of_stream(self) -> list[Received]:
        self._closed = True
        unanswered = tuple(self._pending)
        self._pending.clear()
        self._lists.clear()
        truncated = bool(self._buffer.strip(b"\r\n"))
        self._buffer.clear()
        return [ConnectionClosed(unanswered, truncated)]


# -- actions the client needs ----------------------------------------------------------------------
def login_action(username: str, secret: str, *, events: str | None = "on") -> Action:
    """Plain-text Login. ``events``: the event classes to receive (``on``, ``off``,
    ``call,system``…), None to leave it to manager.conf."""
    return Action.build("Login", Username=username, Secret=secret, Events=events)


def challenge_action() -> Action:
    """Ask for an MD5 challenge (``Action: Challenge``, ``AuthType: MD5``); the response
    carries ``Challenge: <nonce>`` for :func:`md5_login_action`."""
    return Action.build("Challenge", AuthType="MD5")


def md5_key(challenge: str, secret: str) -> str:
    """The Login ``Key`` for MD5 auth: hex MD5 of the challenge followed by the secret
    (Asterisk manager.c, authenticate())."""
    return hashlib.md5((challenge + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


def md5_login_action(username: str, secret: str, challenge: str, *,
                     events: str | None = "on") -> Action:
    """Login answering a Challenge: ``AuthType: MD5``, ``Key: md5(challenge + secret)``;
    the secret itself is not sent."""
    return Action.build("Login", AuthType="MD5", Username=username,
                        Key=md5_key(challenge, secret), Events=events)


def ping_action() -> Action:
    """Keep-alive: answered by ``Response: Success``, ``Ping: Pong``, ``Timestamp: …``."""
    return Action("Ping")


def logoff_action() -> Action:
    """Log off: answered by ``Response: Goodbye``, then Asterisk closes the connection."""
    return Action("Logoff")
