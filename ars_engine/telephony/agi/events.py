"""What Asterisk sends a FastAGI server: the environment block, replies, the pushed HANGUP.

Each event is a frozen value with ``parse(data) -> Self`` and ``bytes()`` giving the wire form.
Lines end in LF only; text is UTF-8 and an invalid byte reads as U+FFFD (never an exception).
Malformed input raises :class:`~ars_engine.errors.ProtocolError` (``protocol="agi"``) with the
byte offset where the problem was seen, and nothing else.

Reply forms (res_agi.c; the ones marked * are in tests/transcripts/asterisk/agi_*)::

    200 result=0 *                    200 result=49 endpos=9760 *      200 result=2345 *
    200 result=1 (abc) *              200 result=0 (timeout) endpos=0 * 200 result=-2 *
    200 result=-1 (hangup) endpos=0 * 200 result= (timeout)           200 result=12*3
    510 Invalid or unknown command *  511 Command Not Permitted on a dead channel or ... *
    520 Invalid command syntax.  Proper usage not available.
    520-Invalid command syntax.  Proper usage follows: *
    <the usage text, raw: several lines, XML markup like <literal>, no prefix>
    520 End of proper usage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from ...errors import ProtocolError
from .commands import AgiCommand

__all__ = ["USAGE_END", "AgiClosed", "AgiEnvironment", "AgiEvent", "AgiReply", "AsyncHangup",
           "decode_line"]

USAGE_END = "520 End of proper usage."
_STATUS = re.compile(r"([0-9]{3})([ -])(.*)", re.DOTALL)
_RESULT = re.compile(r"result=([^ ]*)")
_EXTRA = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|[^ "]*)')
_INT = re.compile(r"-?[0-9]{1,18}")  # int() of a longer string is slow or refused
_STATUS_WORDS = frozenset({"timeout", "hangup", "dtmf", "randomerror", "writefile", "waitfor",
                           "speech", "digit"})
_ENV_NAME = re.compile(r"agi_[A-Za-z0-9_]+")


def decode_line(line: bytes) -> str:
    """A line as text: UTF-8, an invalid byte read as U+FFFD."""
    return line.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True, repr=False)
class AgiEnvironment(Mapping[str, str]):
    """The ``agi_*: value`` block Asterisk sends first, as an ordered read-only mapping.

    Keys are the names as sent (``env["agi_channel"]``). The request URL's path and query are
    parsed: ``agi://127.0.0.1:4573/scenario?call_id=abc`` gives :attr:`script` ``"scenario"``
    and :attr:`query` ``{"call_id": "abc"}``. Dialplan ``AGI(url,a,b)`` arguments are
    :attr:`args`. Asterisk sends every field of res_agi.c setup_env; absent ones read as "".
    """

    variables: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a whole block: ``agi_name: value`` lines, then an empty line."""
        if not data.endswith(b"\n\n") and data != b"\n":
            raise ProtocolError("agi", len(data), "environment block does not end with an "
                                "empty line")
        variables: list[tuple[str, str]] = []
        seen: set[str] = set()
        pos = 0
        for line in data[:-2].split(b"\n") if data != b"\n" else []:
            name, sep, value = decode_line(line).partition(": ")  # setup_env: "%s: %s\n"
            if not sep or _ENV_NAME.fullmatch(name) is None:
                raise ProtocolError("agi", pos, "environment line is not 'agi_name: value'")
            if name in seen:
                raise ProtocolError("agi", pos, f"environment variable {name} repeated")
            seen.add(name)
            variables.append((name, value))
            pos += len(line) + 1
        if "agi_request" not in seen:
            raise ProtocolError("agi", 0, "environment block without agi_request")
        try:
            urlsplit(dict(variables)["agi_request"])
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket
            raise ProtocolError("agi", 0, f"agi_request is not a URL: {exc}") from exc
        return cls(tuple(variables))

    def __bytes__(self) -> bytes:
        return "".join(f"{name}: {value}\n" for name, value in self.variables).encode() + b"\n"

    def __getitem__(self, key: str) -> str:
        for name, value in self.variables:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def _field(self, key: str) -> str:
        return self.get(key) or ""

    @property
    def request(self) -> str:
        """``agi_request``: the URL the dialplan's ``AGI()`` named."""
        return self._field("agi_request")

    @property
    def network_script(self) -> str:
        """``agi_network_script``: the URL after host:port/ (query included), "" when none."""
        return self._field("agi_network_script")

    @property
    def script(self) -> str:
        """The request URL's path without its leading "/" (``scenario``)."""
        return urlsplit(self.request).path.lstrip("/")

    @property
    def query(self) -> dict[str, str]:
        """The request URL's query, percent-decoded; a repeated key keeps its last value."""
        return dict(parse_qsl(urlsplit(self.request).query, keep_blank_values=True))

    @property
    def channel(self) -> str:
        """``agi_channel``: the Asterisk channel name (``PJSIP/softphone-00000001``)."""
        return self._field("agi_channel")

    @property
    def uniqueid(self) -> str:
        """``agi_uniqueid``: the channel's unique id (the one Originate's ChannelId set)."""
        return self._field("agi_uniqueid")

    @property
    def callerid(self) -> str:
        """``agi_callerid``: the caller number ("unknown" when none)."""
        return self._field("agi_callerid")

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1``, ``agi_arg_2``…: the dialplan's extra ``AGI()`` arguments, in order."""
        found: list[str] = []
        while (value := self.get(f"agi_arg_{len(found) + 1}")) is not None:
            found.append(value)
        return tuple(found)

    def __repr__(self) -> str:  # no caller number: it is personal data
        return (f"<AgiEnvironment {self.script!r} channel={self.channel!r} "
                f"uniqueid={self.uniqueid!r}>")


@dataclass(frozen=True, slots=True, repr=False)
class AgiReply:
    """One reply: ``code`` (200, 510, 511, 520…), for 200 the ``result`` text, the ``data`` in
    parentheses and the ``extra`` key=value words (``endpos``); for a 520 block the ``usage``
    text; ``raw`` is the exact bytes received.

    :class:`~.protocol.AgiSession` fills ``command`` (the command this answers) and
    ``after_hangup`` (Asterisk had already pushed ``HANGUP``). ``result_text`` stays text because
    GET DATA answers digit strings (``12*3``, or empty on timeout); :attr:`result` is its integer
    value. The ``repr`` never shows what a callee typed (see ``AgiCommand.secret_result``).
    """

    code: int
    result_text: str | None = None
    data: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    usage: str | None = None
    raw: bytes = b""
    command: AgiCommand | None = None
    after_hangup: bool = False

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse one whole reply: a status line, or a ``520-`` usage block, LF-terminated."""
        if not data.endswith(b"\n"):
            raise ProtocolError("agi", len(data), "reply does not end with LF")
        lines = data[:-1].split(b"\n")
        match = _STATUS.fullmatch(decode_line(lines[0]))
        if match is None:
            raise ProtocolError("agi", 0, "reply line does not start with a 3-digit code")
        code, text = int(match[1]), match[3]
        if match[2] == "-":
            if code != 520:
                raise ProtocolError("agi", 3, f"multi-line reply with code {code}, not 520")
            return cls(520, usage=_usage(lines[1:], len(lines[0]) + 1), raw=data)
        if len(lines) > 1:
            raise ProtocolError("agi", len(lines[0]) + 1, "single-line reply holds a LF")
        if code != 200:
            return cls(code, raw=data)
        result, paren, extra = _parse_200(text)
        return cls(200, result, paren, extra, raw=data)

    def __bytes__(self) -> bytes:
        return self.raw

    @property
    def result(self) -> int | None:
        """``result`` as an integer, None when absent or not one (GET DATA ``12*``, ``""``)."""
        text = self.result_text
        return int(text) if text is not None and _INT.fullmatch(text) else None

    def get(self, key: str) -> str | None:
        """An ``extra`` value (``endpos``…), None when absent."""
        return next((value for name, value in self.extra if name == key), None)

    @property
    def endpos(self) -> int | None:
        """``endpos``: the sample offset where playback or recording stopped."""
        value = self.get("endpos")
        return int(value) if value is not None and _INT.fullmatch(value) else None

    @property
    def status_line(self) -> str:
        """The first line without its LF; for code 200 it may hold keys the callee typed."""
        return decode_line(self.raw.split(b"\n", 1)[0])

    def __repr__(self) -> str:
        to = f" to {self.command.name}" if self.command is not None else ""
        if self.code != 200:
            usage = f" usage={len(self.usage)} chars" if self.usage is not None else ""
            return f"<AgiReply {self.status_line[:80]!r}{usage}{to}>"
        secret = self.command is None or self.command.secret_result
        parts = [f"result={'***' if secret else self.result_text}"]
        if self.data is not None:
            shown = self.data if self.data in _STATUS_WORDS else f"<{len(self.data)} chars>"
            parts.append(f"({shown})")
        parts += [f"{k}={v}" for k, v in self.extra]
        hangup = " after HANGUP" if self.after_hangup else ""
        return f"<AgiReply 200 {' '.join(parts)}{to}{hangup}>"


def _usage(lines: list[bytes], base: int) -> str:
    """The usage text of a 520 block; the last line must end it with ``520 End…``."""
    last = decode_line(lines[-1]) if lines else ""
    if not last.startswith("520 "):
        # res_agi.c sends the usage text as is; were its final LF missing, the end line would
        # be glued to the last usage line.
        if not last.endswith(USAGE_END):
            raise ProtocolError("agi", base + sum(len(x) + 1 for x in lines[:-1]),
                                "520 usage block does not end with '520 ' line")
        return "\n".join([*map(decode_line, lines[:-1]), last[:-len(USAGE_END)]])
    return "\n".join(map(decode_line, lines[:-1]))


def _parse_200(text: str) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
    """``result=X[ (data)][ key=value…]`` → (X, data, extra)."""
    match = _RESULT.match(text)
    if match is None:
        raise ProtocolError("agi", 4, "200 reply without result=")
    rest = text[match.end():]  # "" or starts with " ": the result is every non-space
    if rest.startswith(" ("):
        body = rest[2:]
        if body.endswith(")"):  # GET VARIABLE: the value may hold anything, ")" and " " too
            return match[1], body[:-1], ()
        for close in re.finditer(r"\) ", body):
            try:
                return match[1], body[:close.start()], _extras(body[close.end():])
            except ValueError:
                continue
        raise ProtocolError("agi", 4 + match.end(), "unclosed '(' in a 200 reply")
    try:
        return match[1], None, _extras(rest[1:])
    except ValueError as exc:
        raise ProtocolError("agi", 4 + match.end(), str(exc)) from None


def _extras(text: str) -> tuple[tuple[str, str], ...]:
    """``endpos=9760 results=1 text0="a b"`` → pairs; ValueError when a word is not key=value."""
    pairs = []
    pos = 0
    while pos < len(text):
        match = _EXTRA.match(text, pos)
        if match is None:
            raise ValueError("a word after result= is not key=value")
        pairs.append((match[1], match[2]))
        pos = match.end()
        if pos < len(text):
            if text[pos] != " ":
                raise ValueError("a word after result= is not key=value")
            pos += 1
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class AsyncHangup:
    """``HANGUP``, pushed by Asterisk when the channel dies (res_agi.c run_agi), unprompted and
    possibly between a command and its reply; the connection keeps working after it."""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse the line ``HANGUP\\n``."""
        if data != b"HANGUP\n":
            raise ProtocolError("agi", 0, "not a HANGUP line")
        return cls()

    def __bytes__(self) -> bytes:
        return b"HANGUP\n"


@dataclass(frozen=True, slots=True)
class AgiClosed:
    """Asterisk closed the connection (``receive_data(b"")``)."""


AgiEvent = AgiEnvironment | AgiReply | AsyncHangup | AgiClosed
