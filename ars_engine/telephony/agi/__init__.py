"""FastAGI: Asterisk connects to us per call and we drive the channel one command at a time.

Sans-I/O core (no sockets, no asyncio, no clocks), in the shape of h11:

* :mod:`.commands`: command values; ``bytes(command)`` is the exact line, quoted for res_agi.c
  and safe against injection.
* :mod:`.events`: what Asterisk sends: :class:`AgiEnvironment`, :class:`AgiReply`,
  :class:`AsyncHangup`, :class:`AgiClosed`.
* :mod:`.protocol`: :class:`AgiSession`, the state machine (``receive_data`` / ``send``).
* :mod:`.replies`: :func:`check` (reply → AGI error tree) and the outcome readers.

The errors live in :mod:`ars_engine.errors` (``AgiError`` and subclasses, ``LocalProtocolError``).
"""

from __future__ import annotations

from .commands import (
    DTMF_KEYS,
    MAX_COMMAND_BYTES,
    AgiCommand,
    Answer,
    ChannelStatus,
    ControlStreamFile,
    Exec,
    GetData,
    GetFullVariable,
    GetVariable,
    Hangup,
    Noop,
    RecordFile,
    SayDigits,
    SetVariable,
    StreamFile,
    Verbose,
    WaitForDigit,
)
from .events import AgiClosed, AgiEnvironment, AgiEvent, AgiReply, AsyncHangup
from .protocol import AgiSession, AgiState
from .replies import (
    GatheredDigits,
    RecordEnd,
    RecordOutcome,
    check,
    gathered_digits,
    pressed_key,
    record_outcome,
)

__all__ = [
    "DTMF_KEYS",
    "MAX_COMMAND_BYTES",
    "AgiClosed",
    "AgiCommand",
    "AgiEnvironment",
    "AgiEvent",
    "AgiReply",
    "AgiSession",
    "AgiState",
    "Answer",
    "AsyncHangup",
    "ChannelStatus",
    "ControlStreamFile",
    "Exec",
    "GatheredDigits",
    "GetData",
    "GetFullVariable",
    "GetVariable",
    "Hangup",
    "Noop",
    "RecordEnd",
    "RecordFile",
    "RecordOutcome",
    "SayDigits",
    "SetVariable",
    "StreamFile",
    "Verbose",
    "WaitForDigit",
    "check",
    "gathered_digits",
    "pressed_key",
    "record_outcome",
]
