"""The FastAGI server side as a sans-I/O state machine (in the shape of ``h11.Connection``).

:class:`AgiSession` is fed the bytes Asterisk sends (``receive_data``) and returns events
(:mod:`.events`); it is given one command at a time (``send``) and returns the bytes to write.
No sockets, no clocks: the asyncio server around it reads, writes and times out.

The rules it keeps (res_agi.c run_agi / agi_handle_command; tests/transcripts/asterisk/agi_*)::

    state        input                          next state    event / effect
    ENVIRONMENT  "agi_name: value" line         ENVIRONMENT   (collected)
    ENVIRONMENT  empty line                     IDLE          AgiEnvironment
    IDLE         send(command)                  AWAITING      bytes(command) to write
    AWAITING     "NNN ..." reply line           IDLE          AgiReply (to that command)
    AWAITING     "520-..." line                 USAGE         (collected)
    USAGE        any line but "520 ..."         USAGE         (collected: raw usage text)
    USAGE        "520 End of proper usage."     IDLE          AgiReply (520, usage text)
    IDLE/AWAIT.  "HANGUP"                       unchanged     AsyncHangup
    any          end of stream (b"")            CLOSED        AgiClosed
    any          anything else                  ERROR         ProtocolError

* One command at a time: ``send`` while a reply is pending is a local bug (LocalProtocolError).
  It would also break Asterisk: STREAM FILE, GET DATA and SAY stop *without a reply* when the
  AGI socket becomes readable (res_agi.c handle_streamfile: "don't print a result line, as there
  is a new command"), so replies could no longer be matched to commands.
* ``HANGUP`` comes when the channel dies, between replies (never inside one), possibly after a
  command was sent and before its reply (agi_local_callee_hangup). Asterisk then keeps serving
  until the server closes: GET/SET VARIABLE, EXEC still answer 200, the others 511 (see
  ``AgiCommand.runs_dead``). It may come twice (run_agi sends it again on exit with
  AGIEXITONHANGUP); every one is reported.
* Incomplete input waits for more. Lines and the environment block are bounded.
"""

from __future__ import annotations

import dataclasses
import enum

from ...errors import LocalProtocolError, ProtocolError
from .commands import AgiCommand
from .events import USAGE_END, AgiClosed, AgiEnvironment, AgiEvent, AgiReply, AsyncHangup

__all__ = ["AgiSession", "AgiState"]


class AgiState(enum.Enum):
    """Where the session is (see the table in the module docstring)."""

    ENVIRONMENT = "environment"
    IDLE = "idle"
    AWAITING = "awaiting"
    USAGE = "usage"
    CLOSED = "closed"
    ERROR = "error"


class AgiSession:
    """One FastAGI connection, server side: bytes in, events out; commands in, bytes out.

    ``receive_data(data)`` returns the events ``data`` completes (often none); ``b""`` means
    Asterisk closed the connection. After a ProtocolError the session is broken: if ``data``
    completed events before the bad line they are returned and the next call raises (``failed``
    tells at once); the caller should close the connection.
    """

    __slots__ = ("_buffer", "_consumed", "_environment", "_error", "_hung_up", "_lines",
                 "_pending", "_scan", "_state", "max_environment", "max_line")

    def __init__(self, *, max_line: int = 65536, max_environment: int = 65536) -> None:
        self.max_line = max_line  # bytes in one line, LF included (and in one 520 block)
        self.max_environment = max_environment  # bytes in the whole environment block
        self._buffer = bytearray()
        self._scan = 0  # where to resume looking for LF in _buffer
        self._consumed = 0  # stream bytes before _buffer, for error offsets
        self._lines = bytearray()  # the environment block or 520 block read so far
        self._state = AgiState.ENVIRONMENT
        self._environment: AgiEnvironment | None = None
        self._pending: AgiCommand | None = None
        self._hung_up = False
        self._error: str | None = None

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> AgiState:
        """The current state."""
        return self._state

    @property
    def environment(self) -> AgiEnvironment | None:
        """The environment block once received."""
        return self._environment

    @property
    def pending(self) -> AgiCommand | None:
        """The command sent and not yet answered."""
        return self._pending

    @property
    def hung_up(self) -> bool:
        """True once Asterisk pushed ``HANGUP`` (the channel is dead)."""
        return self._hung_up

    @property
    def failed(self) -> bool:
        """True once the peer broke the protocol (the connection should be closed)."""
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of an event."""
        return len(self._buffer) + len(self._lines)

    # -- sending ------------------------------------------------------------------------------
    def send(self, command: AgiCommand) -> bytes:
        """The bytes for ``command``; the session now awaits its reply.

        LocalProtocolError unless the environment was received and no reply is pending.
        """
        if self._state is not AgiState.IDLE:
            why = {AgiState.ENVIRONMENT: "before the environment block was received",
                   AgiState.AWAITING: f"while {self._pending_name()} awaits its reply",
                   AgiState.USAGE: f"while {self._pending_name()} awaits its reply",
                   AgiState.CLOSED: "after the connection closed",
                   AgiState.ERROR: "after a protocol error"}[self._state]
            raise LocalProtocolError("agi", f"cannot send {command.name} {why}")
        data = bytes(command)
        self._pending, self._state = command, AgiState.AWAITING
        return data

    def _pending_name(self) -> str:
        return self._pending.name if self._pending is not None else "a command"

    # -- receiving ----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[AgiEvent]:
        """Add bytes from Asterisk (``b""`` = end of stream); return the events they complete."""
        if self._error is not None:
            raise ProtocolError("agi", self._consumed, f"session already failed: {self._error}")
        if self._state is AgiState.CLOSED:
            raise LocalProtocolError("agi", "receive_data after the end of the stream")
        if not data:
            self._state = AgiState.CLOSED
            return [AgiClosed()]
        self._buffer += data
        events: list[AgiEvent] = []
        try:
            while (end := self._buffer.find(b"\n", self._scan)) >= 0:
                line = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                self._scan = 0
                at = self._consumed
                self._consumed += len(line)
                if len(line) > self.max_line:
                    raise ProtocolError("agi", at, f"line longer than {self.max_line} bytes")
                event = self._line(line, at)
                if event is not None:
                    events.append(event)
            if len(self._buffer) > self.max_line:
                raise ProtocolError("agi", self._consumed, f"line longer than {self.max_line} "
                                    "bytes")
            self._scan = len(self._buffer)
        except ProtocolError as exc:
            self._error, self._state = exc.message, AgiState.ERROR
            if events:
                return events  # deliver what preceded the error; the next call raises
            raise
        return events

    def _line(self, line: bytes, at: int) -> AgiEvent | None:
        """One complete line (LF included) starting at stream offset ``at``."""
        state = self._state
        if state is AgiState.ENVIRONMENT:
            return self._environment_line(line, at)
        if state is AgiState.USAGE:
            self._lines += line
            if len(self._lines) > self.max_line:
                raise ProtocolError("agi", at, f"520 usage block longer than {self.max_line} "
                                    "bytes")
            if line.startswith(b"520 ") or line.rstrip(b"\n").endswith(USAGE_END.encode()):
                block, self._lines = bytes(self._lines), bytearray()
                return self._reply(block, at - len(block) + len(line))
            return None
        if line == b"HANGUP\n":
            self._hung_up = True
            return AsyncHangup()
        if state is AgiState.IDLE:
            raise ProtocolError("agi", at, "a line arrived with no command awaiting a reply")
        if line.startswith(b"520-"):
            self._lines += line
            self._state = AgiState.USAGE
            return None
        return self._reply(line, at)

    def _environment_line(self, line: bytes, at: int) -> AgiEnvironment | None:
        self._lines += line
        if len(self._lines) > self.max_environment:
            raise ProtocolError("agi", at, f"environment block longer than "
                                f"{self.max_environment} bytes")
        if line != b"\n":
            return None
        block, self._lines = bytes(self._lines), bytearray()
        try:
            env = AgiEnvironment.parse(block)
        except ProtocolError as exc:
            raise ProtocolError("agi", at - len(block) + 1 + max(exc.offset, 0),
                                exc.message) from exc
        self._environment, self._state = env, AgiState.IDLE
        return env

    def _reply(self, block: bytes, at: int) -> AgiReply:
        try:
            reply = AgiReply.parse(block)
        except ProtocolError as exc:
            raise ProtocolError("agi", at + max(exc.offset, 0), exc.message) from exc
        reply = dataclasses.replace(reply, command=self._pending, after_hangup=self._hung_up)
        self._pending, self._state = None, AgiState.IDLE
        return reply
