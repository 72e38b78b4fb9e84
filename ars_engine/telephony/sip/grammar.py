"""RFC 3261 §25.1 primitives shared by the SIP parsers: token, quoted-string, lists, parameters.

Pure functions on ``str``; every malformed input raises :class:`~ars_engine.errors.ProtocolError`
with the offset into the text it was given.
"""

from __future__ import annotations

import re

from ...errors import ProtocolError

__all__ = ["ABSOLUTE_URI", "TOKEN", "Params", "find_param", "format_params", "is_token",
           "parse_params", "quote", "split_list", "unquote"]

Params = tuple[tuple[str, str | None], ...]
"""Parameters in order, as (name, value); ``None`` for a parameter without a value (``;lr``)."""

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = re.compile(f"[{TOKEN_CHARS}]+")
# RFC 3261 §25.1: quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE; a quoted-pair
# escapes any octet but CR and LF (lines are already unfolded when these run).
QUOTED_STRING = r'"(?:[^"\\]|\\.)*"'
_QUOTED = re.compile(QUOTED_STRING, re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
_NEEDS_ESCAPE = re.compile(r'(["\\])')
# RFC 3261 §25.1 absoluteURI, loosely: scheme ":" then anything but whitespace, quotes and <>.
# SIP and SIPS URIs are checked strictly by SipUri.parse; other schemes (tel:, urn:…) stay opaque.
ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>]+")

# One element of a comma-separated list: quoted strings and <…> are opaque (RFC 3261 §7.3.1).
_LIST_ITEM = re.compile(r'(?:"(?:[^"\\]|\\.)*"|<[^>]*>|[^,"<])*', re.S)
# RFC 3261 §25.1 generic-param = token [ EQUAL gen-value ], gen-value = token / host /
# quoted-string; EQUAL and SEMI allow whitespace around them. The value class adds the host
# characters ("[", "]", ":") to token's so IPv6 references and received=2001:db8::1 pass.
_PARAM = re.compile(
    rf"[ \t]*([{TOKEN_CHARS}]+)[ \t]*(?:=[ \t]*({QUOTED_STRING}|[{TOKEN_CHARS}\[\]:]+)[ \t]*)?",
    re.S)


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 3261 token (method names, header names, parameter names)."""
    return TOKEN.fullmatch(text) is not None


def unquote(text: str) -> str:
    """The content of a quoted-string (with or without its quotes), quoted-pairs expanded."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return _UNESCAPE.sub(r"\1", text) if "\\" in text else text


def quote(text: str) -> str:
    """``text`` as a quoted-string: ``"`` and ``\\`` escaped as quoted-pairs (RFC 3261 §25.1)."""
    return '"' + _NEEDS_ESCAPE.sub(r"\\\1", text) + '"'


def match_quoted(text: str, pos: int) -> int:
    """End of the quoted-string that starts at ``text[pos]`` (a ``"``); -1 if unterminated."""
    m = _QUOTED.match(text, pos)
    return m.end() if m else -1


def split_list(value: str) -> list[str]:
    """Split a header value at top-level commas: not inside quotes or ``<…>`` (RFC 3261 §7.3.1).

    Elements are stripped; empty elements are kept (the typed parsers reject them). An unbalanced
    quote or ``<`` makes the rest of the value one element, left for the typed parser to reject.
    """
    if '"' not in value and "<" not in value:
        return [item.strip(" \t") for item in value.split(",")]
    items: list[str] = []
    pos, n = 0, len(value)
    while True:
        m = _LIST_ITEM.match(value, pos)
        end = m.end() if m else pos
        if end < n and value[end] != ",":
            items.append(value[pos:].strip(" \t"))
            return items
        items.append(value[pos:end].strip(" \t"))
        if end >= n:
            return items
        pos = end + 1


def parse_params(text: str, protocol: str = "sip", base: int = 0) -> Params:
    """``*( SEMI generic-param )``: ``text`` is empty or starts with ``;`` (RFC 3261 §25.1).

    Values are kept as written (a quoted value keeps its quotes), so formatting them again
    gives the same text. ``base`` is added to error offsets.
    """
    params: list[tuple[str, str | None]] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos] != ";":
            raise ProtocolError(protocol, base + pos, "expected ';' before a parameter")
        m = _PARAM.match(text, pos + 1)
        if m is None:
            raise ProtocolError(protocol, base + pos + 1, "malformed parameter")
        params.append((m[1], m[2]))
        pos = m.end()
    return tuple(params)


def format_params(params: Params) -> str:
    """``;name=value;flag`` from parsed parameters (the inverse of :func:`parse_params`)."""
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def find_param(params: Params, name: str) -> tuple[bool, str | None]:
    """(present, value) of the first parameter called ``name``, compared case-insensitively."""
    low = name.lower()
    for key, value in params:
        if key.lower() == low:
            return True, value
    return False, None
