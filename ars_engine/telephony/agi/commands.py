"""AGI commands: frozen values whose ``bytes()`` is the exact line Asterisk reads.

Asterisk reads one command per LF-terminated line and splits it into words with res_agi.c
``parse_args``: words are separated by spaces or tabs, a double quote opens or closes a quoted
part (spaces inside stay), and a backslash makes the next character literal. So a word is written
bare when it needs nothing, and otherwise in double quotes with ``"`` and ``\\`` backslash-escaped;
an empty word is ``""``. Escape-digit sets are always quoted, as the transcripts show
(``STREAM FILE hello-world "0123456789#"``, ``SAY DIGITS 1234 ""``).

Command injection is impossible by construction: every argument is checked when the command is
built, and ``bytes()`` checks the whole line again, so no CR, LF, NUL or other control character
(TAB excepted, it is quoted) can reach the wire, and no line is longer than Asterisk's buffer
(a longer one would be cut and its tail run as a second command). A bad argument raises
``ValueError`` naming the command and the argument, never its value (values may be secrets).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DTMF_KEYS",
    "MAX_COMMAND_BYTES",
    "AgiCommand",
    "Answer",
    "ChannelStatus",
    "ControlStreamFile",
    "Exec",
    "GetData",
    "GetFullVariable",
    "GetVariable",
    "Hangup",
    "Noop",
    "RecordFile",
    "SayDigits",
    "SetVariable",
    "StreamFile",
    "Verbose",
    "WaitForDigit",
]

DTMF_KEYS = "0123456789*#ABCD"
# res_agi.c run_agi reads a command with fgets into char buf[AGI_BUF_LEN = 2048]: at most 2047
# bytes, LF included, make one command; the rest of a longer line would run as another command.
MAX_COMMAND_BYTES = 2047
# every C0 control but TAB, DEL, and unpaired surrogates (which cannot be encoded as UTF-8)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_NEEDS_QUOTES = re.compile(r'[ \t"\\]')  # parse_args: word separators, quote, escape
_VARIABLE = re.compile(r"[A-Za-z0-9_.]+(\([^()\s]*\))?")  # NAME or FUNCTION(args)
_APPLICATION = re.compile(r"[A-Za-z0-9_]+")
_DIGITS = re.compile(r"[0-9]+")


class AgiCommand:
    """Base of every command: ``name`` (the command words) and :meth:`arguments`.

    ``runs_dead`` is res_agi.c's "dead" column: whether Asterisk still runs the command once the
    channel is dead (after ``HANGUP``); the others get ``511`` (agi_local_callee_hangup: GET/SET
    VARIABLE, EXEC, VERBOSE, NOOP answer 200; CHANNEL STATUS, STREAM FILE, WAIT FOR DIGIT,
    ANSWER, HANGUP answer 511). ``secret_result`` commands return keys the callee pressed, so
    their replies never show the result in a ``repr``.
    """

    __slots__ = ()
    name: ClassVar[str] = ""
    runs_dead: ClassVar[bool] = False
    secret_result: ClassVar[bool] = False
    _secret_fields: ClassVar[frozenset[str]] = frozenset()

    def arguments(self) -> tuple[str, ...]:
        """The words after the command name, already quoted for the wire."""
        return ()

    def __post_init__(self) -> None:
        bytes(self)  # validate every argument when the command is built, not when it is sent

    def __bytes__(self) -> bytes:
        line = " ".join((self.name, *self.arguments()))
        if _CONTROL.search(line):  # defence in depth: arguments() already refused these
            raise ValueError(f"{self.name}: the command line holds a control character")
        data = (line + "\n").encode("utf-8")
        if len(data) > MAX_COMMAND_BYTES:
            raise ValueError(f"{self.name}: the command line is {len(data)} bytes, "
                             f"Asterisk reads at most {MAX_COMMAND_BYTES}")
        return data

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.name in self._secret_fields:
                parts.append(f"{field.name}=<{len(str(value))} chars>")
            else:
                parts.append(f"{field.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# -- argument encoding -----------------------------------------------------------------------------
def _text(command: AgiCommand, field: str, value: str, *, empty: bool = False) -> str:
    """One free-text word, quoted when parse_args would otherwise split or unescape it."""
    if not isinstance(value, str):
        raise ValueError(f"{type(command).__name__}.{field} must be a string")
    if _CONTROL.search(value):
        raise ValueError(f"{type(command).__name__}.{field} holds CR, LF, NUL, another "
                         "control character or an unpaired surrogate")
    if not value and not empty:
        raise ValueError(f"{type(command).__name__}.{field} must not be empty")
    if value and not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _keys(command: AgiCommand, field: str, value: str) -> str:
    """An escape-digit set, always quoted (``""`` = no key interrupts)."""
    if not isinstance(value, str) or any(key not in DTMF_KEYS for key in value):
        raise ValueError(f"{type(command).__name__}.{field} must hold only DTMF keys "
                         f"{DTMF_KEYS!r}")
    return f'"{value}"'


def _key(command: AgiCommand, field: str, value: str) -> str:
    if not isinstance(value, str) or len(value) != 1 or value not in DTMF_KEYS:
        raise ValueError(f"{type(command).__name__}.{field} must be one DTMF key")
    return value


def _int(command: AgiCommand, field: str, value: int, low: int, high: int = 2**31 - 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{type(command).__name__}.{field} must be an integer in "
                         f"{low}..{high}")
    return str(value)


def _match(command: AgiCommand, field: str, value: str, pattern: re.Pattern[str],
           what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"{type(command).__name__}.{field} must be {what}")
    return value


# -- the commands ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class Answer(AgiCommand):
    """``ANSWER``: answer the channel if it is not up (``result=0``, ``-1`` on failure)."""

    name: ClassVar[str] = "ANSWER"


@dataclass(frozen=True, slots=True, repr=False)
class Hangup(AgiCommand):
    """``HANGUP``: hang up this channel (``result=1``); Asterisk then pushes ``HANGUP``."""

    name: ClassVar[str] = "HANGUP"


@dataclass(frozen=True, slots=True, repr=False)
class Noop(AgiCommand):
    """``NOOP``: does nothing, allowed on a dead channel (``result=0``)."""

    name: ClassVar[str] = "NOOP"
    runs_dead: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, repr=False)
class ChannelStatus(AgiCommand):
    """``CHANNEL STATUS``: the channel state as ``result`` (6 = up)."""

    name: ClassVar[str] = "CHANNEL STATUS"


@dataclass(frozen=True, slots=True, repr=False)
class StreamFile(AgiCommand):
    """``STREAM FILE file "keys" [offset]``: play ``file`` (no extension); a key in
    ``escape_digits`` stops it. Reply ``result=<ASCII code of the key or 0> endpos=<sample>``."""

    name: ClassVar[str] = "STREAM FILE"
    secret_result: ClassVar[bool] = True
    file: str
    escape_digits: str = ""
    offset: int | None = None  # samples to skip

    def arguments(self) -> tuple[str, ...]:
        words = [_text(self, "file", self.file), _keys(self, "escape_digits", self.escape_digits)]
        if self.offset is not None:
            words.append(_int(self, "offset", self.offset, 0))
        return tuple(words)


@dataclass(frozen=True, slots=True, repr=False)
class ControlStreamFile(AgiCommand):
    """``CONTROL STREAM FILE file "keys" [skipms [ffchar [rewchr [pausechr [offsetms]]]]]``.

    Like :class:`StreamFile`, plus keys that skip forward/back by ``skip_ms`` and pause. Asterisk
    defaults ``forward`` to ``#`` and ``rewind`` to ``*`` (res_agi.c handle_controlstreamfile; an
    empty value also means the default), so a key meant to stop playback must not be one of them.
    Unset optional words before a set one are written with Asterisk's defaults.
    """

    name: ClassVar[str] = "CONTROL STREAM FILE"
    secret_result: ClassVar[bool] = True
    file: str
    escape_digits: str = ""
    skip_ms: int | None = None
    forward: str | None = None
    rewind: str | None = None
    pause: str | None = None
    offset_ms: int | None = None  # Asterisk 13+: where to start

    def arguments(self) -> tuple[str, ...]:
        words = [_text(self, "file", self.file), _keys(self, "escape_digits", self.escape_digits)]
        optional = [
            None if self.skip_ms is None else _int(self, "skip_ms", self.skip_ms, 0),
            None if self.forward is None else _key(self, "forward", self.forward),
            None if self.rewind is None else _key(self, "rewind", self.rewind),
            None if self.pause is None else _key(self, "pause", self.pause),
            None if self.offset_ms is None else _int(self, "offset_ms", self.offset_ms, 0),
        ]
        defaults = ["3000", "#", "*", '""', "0"]
        last = max((i for i, word in enumerate(optional) if word is not None), default=-1)
        words += [word if word is not None else defaults[i]
                  for i, word in enumerate(optional[:last + 1])]
        return tuple(words)


@dataclass(frozen=True, slots=True, repr=False)
class GetData(AgiCommand):
    """``GET DATA file timeout maxdigits``: play ``file`` and collect up to ``max_digits`` keys
    (``#`` ends early and is not returned). Reply ``result=<digits>``, with `` (timeout)`` when
    the wait ran out, ``result=-1`` on failure or hangup.

    ``timeout_ms`` is both the first-key and the between-keys timeout; 0 means Asterisk's 6 s /
    2 s, -1 no timeout; the end key is always ``#`` (app.c ast_app_getdata_full).
    """

    name: ClassVar[str] = "GET DATA"
    secret_result: ClassVar[bool] = True
    file: str
    timeout_ms: int
    max_digits: int

    def arguments(self) -> tuple[str, ...]:
        # res_agi.c handle_getdata collects into char data[1024]
        return (_text(self, "file", self.file), _int(self, "timeout_ms", self.timeout_ms, -1),
                _int(self, "max_digits", self.max_digits, 1, 1023))


@dataclass(frozen=True, slots=True, repr=False)
class WaitForDigit(AgiCommand):
    """``WAIT FOR DIGIT timeout``: wait for one key (``-1`` = forever). Reply ``result=<ASCII
    code>`` or ``0`` on timeout."""

    name: ClassVar[str] = "WAIT FOR DIGIT"
    secret_result: ClassVar[bool] = True
    timeout_ms: int

    def arguments(self) -> tuple[str, ...]:
        return (_int(self, "timeout_ms", self.timeout_ms, -1),)


@dataclass(frozen=True, slots=True, repr=False)
class RecordFile(AgiCommand):
    """``RECORD FILE file format "keys" timeout [offset] [BEEP] [s=silence]``.

    Records until a key in ``escape_digits``, ``timeout_ms`` (``-1`` = none), ``silence_s``
    seconds of silence, or hangup. Reply ``result=<code> (dtmf|timeout|hangup) endpos=<sample>``.
    Word order follows res_agi.c handle_recordfile: a number in the 7th word is the offset, a word
    without ``=`` in the 7th or 8th word asks for the beep, ``s=N`` is the silence limit.
    """

    name: ClassVar[str] = "RECORD FILE"
    file: str
    format: str
    escape_digits: str
    timeout_ms: int
    offset: int | None = None
    beep: bool = False
    silence_s: int | None = None

    def arguments(self) -> tuple[str, ...]:
        words = [_text(self, "file", self.file), _text(self, "format", self.format),
                 _keys(self, "escape_digits", self.escape_digits),
                 _int(self, "timeout_ms", self.timeout_ms, -1)]
        if self.offset is not None:
            words.append(_int(self, "offset", self.offset, 0))
        if self.beep:
            words.append("BEEP")
        if self.silence_s is not None:
            words.append("s=" + _int(self, "silence_s", self.silence_s, 1, 3600))
        return tuple(words)


@dataclass(frozen=True, slots=True, repr=False)
class SayDigits(AgiCommand):
    """``SAY DIGITS digits "keys"``: speak each digit. Not for secrets: the digits are on the
    wire and in Asterisk's verbose log; ``repr`` hides them anyway."""

    name: ClassVar[str] = "SAY DIGITS"
    secret_result: ClassVar[bool] = True
    _secret_fields: ClassVar[frozenset[str]] = frozenset({"digits"})
    digits: str
    escape_digits: str = ""

    def arguments(self) -> tuple[str, ...]:
        return (_match(self, "digits", self.digits, _DIGITS, "decimal digits"),
                _keys(self, "escape_digits", self.escape_digits))


@dataclass(frozen=True, slots=True, repr=False)
class SetVariable(AgiCommand):
    """``SET VARIABLE name value`` (``result=1``). ``repr`` hides the value."""

    name: ClassVar[str] = "SET VARIABLE"
    runs_dead: ClassVar[bool] = True
    _secret_fields: ClassVar[frozenset[str]] = frozenset({"value"})
    variable: str
    value: str

    def arguments(self) -> tuple[str, ...]:
        return (_match(self, "variable", self.variable, _VARIABLE, "a variable or FUNCTION(args)"),
                _text(self, "value", self.value, empty=True))


@dataclass(frozen=True, slots=True, repr=False)
class GetVariable(AgiCommand):
    """``GET VARIABLE name``: ``result=1 (value)``, or ``result=0`` when unset."""

    name: ClassVar[str] = "GET VARIABLE"
    runs_dead: ClassVar[bool] = True
    variable: str

    def arguments(self) -> tuple[str, ...]:
        return (_match(self, "variable", self.variable, _VARIABLE,
                       "a variable or FUNCTION(args)"),)


@dataclass(frozen=True, slots=True, repr=False)
class GetFullVariable(AgiCommand):
    """``GET FULL VARIABLE expression [channel]``: Asterisk substitutes ``${...}`` in
    ``expression`` (``result=1 (text)``). Dialplan functions run, so the expression must never
    contain text from outside the engine."""

    name: ClassVar[str] = "GET FULL VARIABLE"
    runs_dead: ClassVar[bool] = True
    expression: str
    channel: str | None = None

    def arguments(self) -> tuple[str, ...]:
        words = [_text(self, "expression", self.expression)]
        if self.channel is not None:
            words.append(_text(self, "channel", self.channel))
        return tuple(words)


@dataclass(frozen=True, slots=True, repr=False)
class Exec(AgiCommand):
    """``EXEC application options``: run a dialplan application; ``result`` is what it returns,
    ``-2`` when there is no such application. ``repr`` hides the options."""

    name: ClassVar[str] = "EXEC"
    runs_dead: ClassVar[bool] = True
    _secret_fields: ClassVar[frozenset[str]] = frozenset({"options"})
    application: str
    options: str = ""

    def arguments(self) -> tuple[str, ...]:
        app = _match(self, "application", self.application, _APPLICATION, "an application name")
        if not self.options:
            return (app,)  # res_agi.c handle_exec: no third word means empty options
        return (app, _text(self, "options", self.options))


@dataclass(frozen=True, slots=True, repr=False)
class Verbose(AgiCommand):
    """``VERBOSE message level``: log ``message`` in Asterisk's verbose log (``result=1``)."""

    name: ClassVar[str] = "VERBOSE"
    runs_dead: ClassVar[bool] = True
    message: str
    level: int = 1

    def arguments(self) -> tuple[str, ...]:
        return (_text(self, "message", self.message, empty=True),
                _int(self, "level", self.level, 1, 4))
