"""SIP messages (RFC 3261 §7): requests, responses, one-datagram parsing and stream framing.

Sans-I/O: :func:`parse_message` takes the bytes of one UDP datagram, :class:`SipStreamParser`
takes a TCP/TLS byte stream in pieces; both return frozen :class:`SipRequest` /
:class:`SipResponse` values, and ``bytes(message)`` serialises one. Malformed input raises
:class:`~ars_engine.errors.ProtocolError` and nothing else; incomplete stream input just waits.

The parsed form is canonical: compact and odd-case header names become their long names
(``v`` → ``Via``), folded lines are unfolded, values are stripped, and there is exactly one
``Content-Length`` whose value is the body's length. So ``parse(bytes(parse(x))) == parse(x)``.
Header values are text: UTF-8 (RFC 3261 §25.1 TEXT-UTF8), any invalid byte read as U+FFFD;
bodies stay bytes. Serialising a message built with CR or LF in a value, or a header name that
is not a token, raises ValueError: that is a local bug, not a peer's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

from ...errors import ProtocolError
from .grammar import ABSOLUTE_URI, is_token, split_list
from .headers import LIST_HEADERS, CSeq, Via, canonical_name
from .uri import SipUri

__all__ = ["Headers", "SipMessage", "SipRequest", "SipResponse", "SipStreamParser",
           "is_keepalive", "parse_message"]

Headers = tuple[tuple[str, str], ...]
"""Header fields in order, as (canonical name, value); one entry per header line."""

_VERSION = re.compile(r"SIP/[0-9]{1,3}\.[0-9]{1,3}", re.IGNORECASE)  # RFC 3261 §7.1 SIP-Version
_LENGTH_DIGITS = 12  # a Content-Length beyond 10**12 bytes is an attack, not a message
_key_cache: dict[str, str] = {}


def _key(name: str) -> str:
    """Lower-cased canonical name, memoised (bounded: peers choose unknown names)."""
    key = _key_cache.get(name)
    if key is None:
        key = canonical_name(name).lower()
        if len(_key_cache) < 4096:
            _key_cache[name] = key
    return key


class _HeaderAccess:
    """Header look-ups shared by requests and responses (case-insensitive, compact-aware)."""

    __slots__ = ()
    headers: Headers

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order. List headers (Via, Contact, Route…,
        RFC 3261 §7.3.1) are split at top-level commas, so each Via entry is one value."""
        want = _key(name)
        values = [value for n, value in self.headers if _key(n) == want]
        if canonical_name(name) in LIST_HEADERS:
            return [item for value in values for item in split_list(value)]
        return values

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (the first list element for list headers), or None."""
        want = _key(name)
        for n, value in self.headers:
            if _key(n) == want:
                if canonical_name(name) in LIST_HEADERS:
                    return split_list(value)[0]
                return value
        return None

    @property
    def call_id(self) -> str | None:
        """The Call-ID (RFC 3261 §20.8), or None when absent."""
        return self.get("Call-ID")

    @property
    def branch(self) -> str:
        """The top Via's branch (the transaction id, RFC 3261 §17.1.3), '' when none."""
        vias = self.get_all("Via")
        return (Via.parse(vias[0]).branch or "") if vias else ""

    @property
    def cseq(self) -> CSeq:
        """The CSeq, parsed; ProtocolError when absent or malformed."""
        value = self.get("CSeq")
        if value is None:
            raise ProtocolError("sip", -1, "no CSeq header")
        return CSeq.parse(value)


@dataclass(frozen=True, slots=True, repr=False)
class SipRequest(_HeaderAccess):
    """A SIP request: ``method`` and Request-URI ``uri`` (text; see :attr:`sip_uri`)."""

    method: str
    uri: str
    headers: Headers = ()
    body: bytes = b""
    version: str = "SIP/2.0"

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse one datagram that must hold a request."""
        message = parse_message(data)
        if not isinstance(message, cls):
            raise ProtocolError("sip", 0, "expected a request, got a response")
        return message

    @property
    def sip_uri(self) -> SipUri:
        """The Request-URI parsed as a SIP URI (ProtocolError for other schemes)."""
        return SipUri.parse(self.uri)

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.method} {self.uri} {self.version}", self.headers, self.body)

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.call_id!r}>"


@dataclass(frozen=True, slots=True, repr=False)
class SipResponse(_HeaderAccess):
    """A SIP response: ``status`` (100-699) and ``reason`` phrase."""

    status: int
    reason: str
    headers: Headers = ()
    body: bytes = b""
    version: str = "SIP/2.0"

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse one datagram that must hold a response."""
        message = parse_message(data)
        if not isinstance(message, cls):
            raise ProtocolError("sip", 0, "expected a response, got a request")
        return message

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.version} {self.status} {self.reason}", self.headers, self.body)

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id!r}>"


SipMessage = SipRequest | SipResponse


def response_to(request: SipRequest, status: int, reason: str, *, to_tag: str | None = None,
                extra: Headers = (), body: bytes = b"") -> SipResponse:
    """A response to ``request``: its Via list, From, To (with ``to_tag`` added when it has
    none), Call-ID and CSeq copied as RFC 3261 §8.2.6.2 requires, then ``extra`` headers."""
    to = request.get("To") or ""
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    headers = [("Via", v) for v in request.get_all("Via")]
    headers += [("From", request.get("From") or ""), ("To", to),
                ("Call-ID", request.call_id or ""), ("CSeq", request.get("CSeq") or "")]
    return SipResponse(status, reason, (*headers, *extra), body)


def is_keepalive(data: bytes) -> bool:
    """True for a CRLF keep-alive (RFC 5626 §3.5.1 sends "\\r\\n\\r\\n"; some send one CRLF)."""
    return not data.strip(b"\r\n")


def parse_message(data: bytes) -> SipMessage:
    """Parse one datagram holding one SIP message (RFC 3261 §7, §18.3 for UDP framing).

    Without Content-Length the body is the rest of the datagram; a larger Content-Length than
    the bytes present is an error, a smaller one truncates the body (bytes after it are dropped).
    """
    data = bytes(data)
    start = _skip_crlf(data, 0)
    if start >= len(data):
        raise ProtocolError("sip", 0, "no SIP message (empty or CRLF keep-alive only)")
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise ProtocolError("sip", len(data), "no empty line ending the header section")
    head = _parse_head(data[start:end], start)
    body_at = end + 4
    length = head[3]
    if length is not None and length > len(data) - body_at:
        # RFC 3261 §18.3: over UDP a Content-Length beyond the datagram is a malformed message
        raise ProtocolError("sip", body_at, f"Content-Length {length} exceeds the "
                            f"{len(data) - body_at} bytes after the header section")
    body = data[body_at:] if length is None else data[body_at:body_at + length]
    return _build(head, body)


class SipStreamParser:
    """Frames SIP messages on a TCP/TLS stream by Content-Length (RFC 3261 §18.3).

    ``feed(data)`` returns the messages completed by ``data`` (often none); incomplete input is
    kept for the next call, never an error. Malformed input raises ProtocolError, after the
    messages before it: if ``data`` completed some, they are returned and the error is raised by
    the next ``feed`` (``failed`` tells at once). The stream cannot be resynced after an error:
    every later ``feed`` raises and the caller should close the connection.
    """

    __slots__ = ("_buffer", "_consumed", "_failed", "_head", "_scan", "max_head")

    def __init__(self, max_head: int = 65536) -> None:
        self._buffer = bytearray()
        self._consumed = 0  # bytes of the stream already framed, for error offsets
        self._failed: str | None = None
        self._head: _Head | None = None  # parsed header section waiting for its body
        self._scan = 0  # where to resume looking for the end of the header section
        self.max_head = max_head

    @property
    def failed(self) -> bool:
        """True once the stream broke the protocol (the connection should be closed)."""
        return self._failed is not None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SipMessage]:
        """Add stream bytes; return the messages they complete, in order."""
        if self._failed is not None:
            raise ProtocolError("sip", self._consumed, f"stream already failed: {self._failed}")
        buf = self._buffer
        buf += data
        messages: list[SipMessage] = []
        try:
            while True:
                if self._head is None:
                    skip = _skip_crlf(buf, 0)  # RFC 3261 §7.5: CRLF before a start line
                    if skip:
                        del buf[:skip]
                        self._consumed += skip
                        self._scan = 0
                    end = buf.find(b"\r\n\r\n", self._scan)
                    if end < 0:
                        if len(buf) > self.max_head:
                            raise ProtocolError("sip", self._consumed, "header section too long")
                        self._scan = max(0, len(buf) - 3)
                        break
                    self._head = _parse_head(bytes(buf[:end]), self._consumed)
                    self._scan = end  # now: where the header section ends
                head = self._head
                total = self._scan + 4 + (head[3] or 0)
                if len(buf) < total:
                    break
                messages.append(_build(head, bytes(buf[self._scan + 4:total])))
                del buf[:total]
                self._consumed += total
                self._head, self._scan = None, 0
        except ProtocolError as exc:
            self._failed = exc.message
            if messages:
                return messages  # deliver what preceded the error; the next feed raises
            raise
        return messages


# -- parsing ---------------------------------------------------------------------------------------
# (start line fields, headers, index of Content-Length in headers, its value or None)
_Head = tuple[tuple[str, str, str] | tuple[int, str, str], list[tuple[str, str]], int, int | None]


def _skip_crlf(data: bytes | bytearray, pos: int) -> int:
    while data.startswith(b"\r\n", pos):
        pos += 2
    return pos


def _parse_head(head: bytes, base: int) -> _Head:
    """Start line and header fields of one header section (no final CRLF CRLF)."""
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        # RFC 3261 §7: lines end in CRLF; a bare CR or LF could smuggle a header past a proxy
        at = min(i for i in (head.replace(b"\r\n", b"  ").find(b"\r"),
                              head.replace(b"\r\n", b"  ").find(b"\n")) if i >= 0)
        raise ProtocolError("sip", base + at, "bare CR or LF in the header section")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("utf-8", "replace")
    lines = text.split("\r\n")
    start = _parse_start_line(lines[0], base)
    headers: list[tuple[str, str]] = []
    length_at, length = -1, None
    for i in range(1, len(lines)):
        line = lines[i]
        if line[:1] in (" ", "\t"):  # RFC 3261 §7.3.1: a line starting with whitespace continues
            if not headers:
                raise ProtocolError("sip", _line_offset(head, i, base),
                                    "continuation line before any header")
            more = line.strip(" \t")
            if more:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {more}" if value else more)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError("sip", _line_offset(head, i, base), "header line without ':'")
        name = name.rstrip(" \t")  # RFC 3261 §25.1: HCOLON = *( SP / HTAB ) ":" SWS
        canonical = canonical_name(name)
        if canonical is name and not is_token(name):
            raise ProtocolError("sip", _line_offset(head, i, base), "header name is not a token")
        if canonical == "Content-Length":
            number = value.strip(" \t")
            if not (number.isascii() and number.isdigit()) or len(number) > _LENGTH_DIGITS:
                # RFC 4475 §3.1.2.3: a negative or non-numeric length
                raise ProtocolError("sip", _line_offset(head, i, base),
                                    "Content-Length is not a non-negative integer")
            if length is not None:
                if int(number) != length:  # RFC 4475 §3.3.9: which one frames the body?
                    raise ProtocolError("sip", _line_offset(head, i, base),
                                        "conflicting Content-Length headers")
                continue  # a duplicate with the same value: keep one
            length_at, length = len(headers), int(number)
        headers.append((canonical, value.strip(" \t")))
    return start, headers, length_at, length


def _parse_start_line(line: str, base: int) -> tuple[str, str, str] | tuple[int, str, str]:
    if line[:4].upper() == "SIP/":  # RFC 3261 §7.2 Status-Line
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if _VERSION.fullmatch(version) is None:
            raise ProtocolError("sip", base, f"bad SIP version {version[:20]!r}")
        if not (len(code) == 3 and code.isascii() and code.isdigit() and "1" <= code[0] <= "6"):
            # RFC 3261 §7.2: Status-Code = 3DIGIT, classes 1xx-6xx (RFC 4475 §3.1.2.19)
            raise ProtocolError("sip", base + len(version) + 1, "status code is not 100-699")
        return int(code), reason, version.upper()
    # RFC 3261 §7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF, single spaces
    # (RFC 4475 §3.1.2.8-10 use extra or trailing spaces and must be rejected).
    parts = line.split(" ")
    if len(parts) != 3:
        raise ProtocolError("sip", base, "request line is not 'Method SP Request-URI SP Version'")
    method, uri, version = parts
    if not is_token(method):
        raise ProtocolError("sip", base, "method is not a token")
    uri_at = base + len(method) + 1
    if ABSOLUTE_URI.fullmatch(uri) is None:  # RFC 4475 §3.1.2.7: no <> around the URI
        raise ProtocolError("sip", uri_at, "malformed Request-URI")
    if uri.partition(":")[0].lower() in ("sip", "sips"):
        try:
            sip_uri = SipUri.parse(uri)
        except ProtocolError as exc:
            raise ProtocolError("sip", uri_at + max(exc.offset, 0), exc.message) from exc
        if sip_uri.headers:
            # RFC 3261 §19.1.1 (table): no headers in a Request-URI (RFC 4475 §3.1.2.11)
            raise ProtocolError("sip", uri_at, "Request-URI carries headers")
    if _VERSION.fullmatch(version) is None:
        raise ProtocolError("sip", uri_at + len(uri) + 1, f"bad SIP version {version[:20]!r}")
    return method, uri, version.upper()


def _line_offset(head: bytes, index: int, base: int) -> int:
    """Byte offset of line ``index`` of a header section (for error reports only)."""
    pos = 0
    for _ in range(index):
        pos = head.index(b"\r\n", pos) + 2
    return base + pos


def _build(head: _Head, body: bytes) -> SipMessage:
    start, headers, length_at, _ = head
    if length_at < 0:
        headers.append(("Content-Length", str(len(body))))
    else:
        headers[length_at] = ("Content-Length", str(len(body)))
    if isinstance(start[0], int):
        return SipResponse(start[0], start[1], tuple(headers), body, start[2])
    return SipRequest(start[0], start[1], tuple(headers), body, start[2])


# -- serialising -----------------------------------------------------------------------------------
def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    """Canonical form: long header names, ``Name: value``, one Content-Length = len(body)."""
    lines = [start_line]
    have_length = False
    for name, value in headers:
        canonical = canonical_name(name)
        if canonical is name and not is_token(name):
            raise ValueError(f"header name {name!r} is not a token")
        if canonical == "Content-Length":
            if have_length:
                continue
            have_length, value = True, str(len(body))
        lines.append(f"{canonical}: {value}")
    if not have_length:
        lines.append(f"Content-Length: {len(body)}")
    text = "\r\n".join(lines)
    if text.count("\r") != len(lines) - 1 or text.count("\n") != len(lines) - 1:
        raise ValueError("CR or LF inside a start line or header value")
    return (text + "\r\n\r\n").encode("utf-8") + body
