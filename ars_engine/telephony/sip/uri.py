"""SIP and SIPS URIs (RFC 3261 §19.1): ``sip:user:password@host:port;params?headers``.

Components are kept as written, escapes included (``%40`` stays ``%40``), so ``str(uri)`` gives
the input back (the scheme lower-cased). Comparison rules (§19.1.4) belong to the callers that
need them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

from ...errors import ProtocolError
from .grammar import Params, find_param, format_params

__all__ = ["MAX_URI", "SipUri"]

# The regex is linear but not free (about 1 µs per 1.5 characters on hostile input); no real
# SIP URI comes near this, so a 64 KiB datagram cannot buy tens of milliseconds of CPU.
MAX_URI = 4096

# RFC 3261 §25.1 character classes.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"  # alphanum / mark
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_USER = rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+"  # user-unreserved adds & = + $ , ; ? /
_PASSWORD = rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*"
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})"  # param-unreserved adds [ ] / : & + $
_HNVCHAR = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})"  # hnv-unreserved adds [ ] / ? : + $
# hostname / IPv4address / IPv6reference; "_" is not in the grammar but real hosts use it.
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9\-_.]*"
_PARAM = rf"{_PARAMCHAR}+(?:={_PARAMCHAR}+)?"
_HEADER = rf"{_HNVCHAR}+={_HNVCHAR}*"

# The userinfo group needs its "@": a URI without one falls through to the host. The user part
# may hold ";" and "?" (RFC 4475 §3.1.1.9), so params and headers are only looked for after it.
_SIP_URI = re.compile(
    rf"(?P<scheme>[Ss][Ii][Pp][Ss]?):"
    rf"(?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?"
    rf"(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?P<params>(?:;{_PARAM})*)"
    rf"(?:\?(?P<headers>{_HEADER}(?:&{_HEADER})*))?")


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI. ``host`` keeps the brackets of an IPv6 reference."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a SIP/SIPS URI; anything else raises :class:`ProtocolError`."""
        if len(text) > MAX_URI:
            raise ProtocolError("sip", MAX_URI, f"URI longer than {MAX_URI} characters")
        m = _SIP_URI.fullmatch(text)
        if m is None:
            raise ProtocolError("sip", _error_offset(text), f"not a SIP URI: {text[:80]!r}")
        port = m["port"]
        if port is not None and int(port) > 65535:
            raise ProtocolError("sip", m.start("port"), "port out of range")
        params: Params = ()
        if m["params"]:
            params = tuple((name, value if sep else None) for name, sep, value in
                           (item.partition("=") for item in m["params"][1:].split(";")))
        headers: tuple[tuple[str, str], ...] = ()
        if m["headers"]:
            headers = tuple((name, value) for name, _, value in
                            (item.partition("=") for item in m["headers"].split("&")))
        return cls(scheme=m["scheme"].lower(), user=m["user"], password=m["password"],
                   host=m["host"], port=int(port) if port is not None else None,
                   params=params, headers=headers)

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user if self.password is None else f"{self.user}:{self.password}"
            userinfo += "@"
        port = "" if self.port is None else f":{self.port}"
        headers = ("?" + "&".join(f"{n}={v}" for n, v in self.headers)) if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{headers}"

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def param(self, name: str) -> str | None:
        """Value of the URI parameter ``name`` (case-insensitive); None if absent or valueless."""
        return find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """True if the URI has parameter ``name``, with or without a value (``;lr``)."""
        return find_param(self.params, name)[0]

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased (RFC 3261 §19.1.1), or None."""
        value = self.param("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port`` as written in a Via sent-by or a Request-URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def _error_offset(text: str) -> int:
    """Best guess at where a URI goes wrong: after the scheme, or at its first bad character."""
    colon = text.find(":")
    if colon <= 0 or text[:colon].lower() not in ("sip", "sips"):
        return 0
    for i, ch in enumerate(text):
        if ch in ' \t"<>\\^`{|}' or ord(ch) < 0x21 or ord(ch) > 0x7E:
            return i
    return colon + 1
