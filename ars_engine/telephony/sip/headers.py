"""SIP header names and the typed header values the UA needs: name-addr, Via, CSeq.

Names: every header is stored under its canonical long name (``v`` and ``VIA`` become ``Via``,
RFC 3261 §7.3.3 and the IANA SIP header registry); unknown names are kept as received.
Typed values are frozen dataclasses with ``parse(text) -> Self`` and ``__str__`` giving the
canonical text back; malformed values raise :class:`~ars_engine.errors.ProtocolError` with the
offset into the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

from ...errors import ProtocolError
from .grammar import (
    ABSOLUTE_URI,
    TOKEN_CHARS,
    Params,
    find_param,
    format_params,
    match_quoted,
    parse_params,
    quote,
    unquote,
)
from .uri import SipUri

__all__ = ["COMPACT_FORMS", "LIST_HEADERS", "CSeq", "NameAddr", "Via", "canonical_name"]

# RFC 3261 §7.3.3 and the IANA "Header Fields" registry of SIP parameters: compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires",
    "y": "Identity",
}
# RFC 3261 §20 plus the extensions a trunk or softphone commonly sends (RFC 3262, 3265, 3515,
# 3325, 3326, 3327, 3608, 4028, 5626...). Spelling as in the defining RFC.
_KNOWN = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authentication-Info",
    "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Expires",
    "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version", "Organization",
    "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Record-Route",
    "Reply-To", "Require", "Retry-After", "Route", "Server", "Subject", "Supported", "Timestamp",
    "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
    "RAck", "RSeq", "Event", "Allow-Events", "Subscription-State", "Refer-To", "Referred-By",
    "Replaces", "Session-Expires", "Min-SE", "P-Asserted-Identity", "P-Preferred-Identity",
    "Privacy", "Path", "Service-Route", "Reason", "Identity", "Identity-Info", "Accept-Contact",
    "Reject-Contact", "Request-Disposition", "Flow-Timer", "Diversion", "History-Info",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN} | COMPACT_FORMS
# Headers whose value is a comma-separated list (RFC 3261 §7.3.1: "#" rules), split by
# get_all(). Not the auth headers (their parameters are comma-separated), not Date (it
# contains a comma), not unknown headers (RFC 4475 §3.1.1.1: their syntax is unknown).
LIST_HEADERS = frozenset((
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Call-Info",
    "Contact", "Content-Encoding", "Content-Language", "Error-Info", "In-Reply-To",
    "Proxy-Require", "Record-Route", "Require", "Route", "Supported", "Unsupported", "Via",
    "Warning", "Allow-Events", "Path", "Service-Route", "P-Asserted-Identity",
    "P-Preferred-Identity", "Reason", "Accept-Contact", "Reject-Contact", "Request-Disposition",
    "History-Info", "Diversion",
))


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name: long form, registry case; unknown names as is."""
    return _CANONICAL.get(name.lower(), name)


_DISPLAY_TOKENS = re.compile(rf"[{TOKEN_CHARS}]+(?:[ \t]+[{TOKEN_CHARS}]+)*")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route, Refer-To… (RFC 3261 §20.10, §25.1 name-addr).

    ``uri`` is the URI text as written (any scheme: ``tel:`` appears in P-Asserted-Identity);
    :attr:`sip_uri` parses it as a SIP URI. ``params`` are the header parameters (``tag``,
    ``expires``, ``q``…), values as written. The display name is unquoted.
    """

    display_name: str | None
    uri: str
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``"Name" <uri>;params``, ``Name <uri>``, ``<uri>`` or a bare ``uri;params``."""
        s = text.strip(" \t")
        lead = len(text) - len(text.lstrip(" \t"))
        display: str | None = None
        if s.startswith('"'):
            end = match_quoted(s, 0)
            if end < 0:
                raise ProtocolError("sip", lead, "unterminated quoted display name")
            display = unquote(s[1:end - 1])
            rest_at = end + len(s[end:]) - len(s[end:].lstrip(" \t"))
            if not s.startswith("<", rest_at):
                raise ProtocolError("sip", lead + rest_at, "expected '<' after the display name")
        else:
            rest_at = s.find("<")
            if rest_at > 0:
                words = s[:rest_at].strip(" \t")
                # RFC 3261 §25.1: display-name = *(token LWS) / quoted-string
                if _DISPLAY_TOKENS.fullmatch(words) is None:
                    raise ProtocolError("sip", lead, "display name is neither tokens nor quoted")
                display = words
        if rest_at >= 0:
            close = s.find(">", rest_at)
            if close < 0:
                raise ProtocolError("sip", lead + rest_at, "missing '>'")
            uri = s[rest_at + 1:close]
            params_text = s[close + 1:].lstrip(" \t")
            params_at = lead + len(s) - len(params_text)
        else:
            # RFC 3261 §20.10: without <>, everything after the first ";" is a header parameter,
            # and the URI may not contain "," or "?" (RFC 4475 §3.1.2.13).
            semi = s.find(";")
            uri = s if semi < 0 else s[:semi].rstrip(" \t")
            params_text = "" if semi < 0 else s[semi:]
            params_at = lead + max(semi, 0)
            if "?" in uri or "," in uri:
                raise ProtocolError("sip", lead, "a URI with '?' or ',' must be inside <>")
        if ABSOLUTE_URI.fullmatch(uri) is None:
            raise ProtocolError("sip", lead + max(rest_at, 0), f"malformed URI {uri[:80]!r}")
        return cls(display, uri, parse_params(params_text, "sip", params_at))

    def __str__(self) -> str:
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    @property
    def sip_uri(self) -> SipUri:
        """The URI parsed as a SIP/SIPS URI (raises ProtocolError for other schemes)."""
        return SipUri.parse(self.uri)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3), or None."""
        return find_param(self.params, "tag")[1]

    def param(self, name: str) -> str | None:
        """Value of header parameter ``name`` (case-insensitive); None if absent or valueless."""
        return find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """True if header parameter ``name`` is present, with or without a value."""
        return find_param(self.params, name)[0]


# RFC 3261 §25.1: via-parm = sent-protocol LWS sent-by *( SEMI via-params ); SLASH and COLON
# allow whitespace around them (RFC 4475 §3.1.1.1 folds a Via across three lines).
_VIA = re.compile(
    rf"([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9\-_.]*)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=…;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse one via-parm (split a multi-value Via header with ``get_all`` first)."""
        m = _VIA.match(text.strip(" \t"))
        lead = len(text) - len(text.lstrip(" \t"))
        if m is None:
            raise ProtocolError("sip", lead, f"malformed Via {text[:80]!r}")
        port = int(m[5]) if m[5] is not None else None
        if port is not None and port > 65535:
            raise ProtocolError("sip", lead + m.start(5), "Via port out of range")
        rest = text.strip(" \t")[m.end():]
        return cls(m[3].upper(), m[4], port, parse_params(rest, "sip", lead + m.end()),
                   f"{m[1].upper()}/{m[2]}")

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter; RFC 3261 §8.1.1.7 ones start with ``z9hG4bK``."""
        return find_param(self.params, "branch")[1]

    @property
    def sent_by(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def param(self, name: str) -> str | None:
        """Value of Via parameter ``name`` (case-insensitive); None if absent or valueless."""
        return find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """True if ``name`` is present with or without a value (RFC 3581 ``;rport``)."""
        return find_param(self.params, name)[0]


_CSEQ = re.compile(rf"[ \t]*([0-9]+)[ \t]+([{TOKEN_CHARS}]+)[ \t]*")
_CSEQ_MAX = 2**32 - 1  # RFC 3261 §8.1.1.5: a 32-bit unsigned integer


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number and method, ``314159 INVITE``."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``number method``; numbers beyond 2**32-1 are rejected (RFC 4475 §3.1.2.4)."""
        m = _CSEQ.fullmatch(text)
        if m is None:
            raise ProtocolError("sip", 0, f"malformed CSeq {text[:80]!r}")
        digits = m[1].lstrip("0")
        if len(digits) > 10 or int(digits or "0") > _CSEQ_MAX:
            raise ProtocolError("sip", m.start(1), "CSeq number larger than 2**32-1")
        return cls(int(digits or "0"), m[2])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq} {self.method})"

