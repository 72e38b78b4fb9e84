"""What a reply means: :func:`check` turns failures into the AGI error tree, and the helpers
read the outcome of the commands a Channel uses (keys pressed, digits gathered, recordings).

Pure functions of an :class:`~.events.AgiReply` (whose ``command`` and ``after_hangup`` the
session filled in), each with a table test. Errors carry the reply (``exc.reply.raw`` is
Asterisk's exact words); their messages name the command, never its arguments or what the
callee typed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...errors import (
    AgiCommandFailed,
    AgiDeadChannel,
    AgiError,
    AgiHangup,
    AgiInvalidCommand,
    AgiUsageError,
    ProtocolError,
)
from .commands import DTMF_KEYS, Exec, RecordFile
from .events import AgiReply

__all__ = ["GatheredDigits", "RecordEnd", "RecordOutcome", "check", "gathered_digits",
           "pressed_key", "record_outcome"]

# RECORD FILE words for failures before or while writing (res_agi.c handle_recordfile)
_RECORD_FAILURES = frozenset({"randomerror", "writefile", "waitfor"})


def check(reply: AgiReply) -> AgiReply:
    """Return ``reply`` when it is a success, else raise what it means.

    ===============================================  ==========================================
    reply                                            raises
    ===============================================  ==========================================
    510                                              AgiInvalidCommand
    511 (dead channel)                               AgiDeadChannel (an AgiHangup)
    520 (with or without usage text)                 AgiUsageError (``usage``)
    other non-200 code                               AgiError
    200 result<0 with ``(hangup)``                   AgiHangup
    200 result=-1 after Asterisk pushed HANGUP       AgiHangup
    200 EXEC result=-2 (no such application)         AgiCommandFailed
    200 other result<0                               AgiCommandFailed (``may_be_hangup``)
    200 RECORD FILE (randomerror|writefile|waitfor)  AgiCommandFailed
    ===============================================  ==========================================

    ``may_be_hangup``: STREAM FILE, GET DATA, EXEC… answer ``result=-1`` both when the callee
    hung up and when e.g. the file is missing. After a hangup Asterisk pushes ``HANGUP`` before
    it reads the next command (run_agi checks the channel between commands), so send ``NOOP``:
    an AsyncHangup before its reply means the callee hung up.
    """
    command = reply.command
    name = command.name if command is not None else "AGI command"
    if reply.code == 510:
        raise AgiInvalidCommand(reply, f"{name}: Asterisk does not know this command (510)")
    if reply.code == 511:
        raise AgiDeadChannel(reply, f"{name}: not permitted on a dead channel (511)")
    if reply.code == 520:
        raise AgiUsageError(reply, f"{name}: invalid command syntax (520)")
    if reply.code != 200:
        raise AgiError(reply, f"{name}: unexpected reply code {reply.code}")
    result = reply.result
    if result is not None and result < 0 and (
            reply.data == "hangup" or (result == -1 and reply.after_hangup)):
        raise AgiHangup(reply, f"{name}: the channel hung up")
    if isinstance(command, RecordFile) and reply.data in _RECORD_FAILURES:
        raise AgiCommandFailed(reply, f"{name} failed ({reply.data})",
                               may_be_hangup=result == -1)
    if result is None or result >= 0:
        return reply
    if isinstance(command, Exec) and result == -2:
        raise AgiCommandFailed(reply, f"{name}: no such application (result -2)")
    raise AgiCommandFailed(reply, f"{name} failed (result {result})", may_be_hangup=result == -1)


def _key(code: int) -> str:
    key = chr(code) if 0 < code < 128 else ""
    if not key or key not in DTMF_KEYS:
        raise ProtocolError("agi", -1, f"result {code} is not the ASCII code of a DTMF key")
    return key


def pressed_key(reply: AgiReply) -> str | None:
    """The key that ended STREAM FILE, CONTROL STREAM FILE, SAY DIGITS or WAIT FOR DIGIT
    (``result`` is its ASCII code: 49 → "1"), None when none was pressed (``result=0``).

    Raises like :func:`check` first; ProtocolError when the result is not a key code. The
    playback position, when Asterisk gives one, is ``reply.endpos``.
    """
    check(reply)
    code = reply.result
    if code is None:
        raise ProtocolError("agi", -1, "result is not a number")
    return None if code == 0 else _key(code)


@dataclass(frozen=True, slots=True)
class GatheredDigits:
    """GET DATA's answer: the keys typed (``#`` ends input and is not included) and whether
    the wait ran out (``(timeout)``; then ``digits`` may be empty or partial)."""

    digits: str
    timed_out: bool

    def __repr__(self) -> str:  # digits may be a PIN: never in a repr
        return f"GatheredDigits({len(self.digits)} digits, timed_out={self.timed_out})"


def gathered_digits(reply: AgiReply) -> GatheredDigits:
    """Read a GET DATA reply (``200 result=2345``, ``200 result=23 (timeout)``,
    ``200 result= (timeout)``). Raises like :func:`check`; ProtocolError for a non-key result."""
    check(reply)
    digits = reply.result_text or ""
    if any(key not in DTMF_KEYS for key in digits):
        raise ProtocolError("agi", -1, "GET DATA result holds a character that is not a key")
    return GatheredDigits(digits, reply.data == "timeout")


class RecordEnd(enum.Enum):
    """Why RECORD FILE stopped."""

    DTMF = "dtmf"  # a key in escape_digits
    TIMEOUT = "timeout"  # timeout_ms or silence_s ran out
    HANGUP = "hangup"  # the callee hung up; what was recorded up to then is kept


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """RECORD FILE's answer: why it stopped, the key (for DTMF) and ``endpos`` in samples."""

    end: RecordEnd
    key: str | None
    endpos: int

    def __repr__(self) -> str:
        return f"RecordOutcome({self.end.value}, endpos={self.endpos})"


def record_outcome(reply: AgiReply) -> RecordOutcome:
    """Read a RECORD FILE reply: ``result=35 (dtmf) endpos=N``, ``result=0 (timeout)
    endpos=N`` or ``result=-1 (hangup) endpos=N``. Hangup is an outcome here, not an error, so
    the caller can keep the partial recording (agi_local_callee_hangup); other failures raise
    like :func:`check`."""
    endpos = reply.endpos
    if reply.code == 200 and reply.data == "hangup":
        return RecordOutcome(RecordEnd.HANGUP, None, endpos or 0)
    check(reply)
    if endpos is None:
        raise ProtocolError("agi", -1, "RECORD FILE reply without endpos")
    if reply.data == "dtmf":
        return RecordOutcome(RecordEnd.DTMF, _key(reply.result or 0), endpos)
    if reply.data == "timeout":
        return RecordOutcome(RecordEnd.TIMEOUT, None, endpos)
    raise ProtocolError("agi", -1, "RECORD FILE reply is neither (dtmf), (timeout) nor (hangup)")
