"""HTTP Digest authentication as SIP uses it for 401/407 (RFC 3261 §22.4, RFC 8760).

Pure functions: :func:`parse_challenge` reads a WWW-Authenticate / Proxy-Authenticate value,
:func:`authorization` computes the Authorization / Proxy-Authorization value for a request, and
:func:`parse_credentials` + :func:`verify` check one on the UAS side. Algorithms MD5, MD5-sess
(RFC 2617), SHA-256, SHA-256-sess, SHA-512-256, SHA-512-256-sess (RFC 7616, RFC 8760); qop
``auth`` and ``auth-int``, or the RFC 2069 form when the challenge offers no qop.

No randomness and no clock inside: the caller passes the ``cnonce`` (:func:`new_cnonce` makes
one) and counts ``nc``. A password is never stored, logged, or put in an exception or repr.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from ...errors import ProtocolError
from .grammar import QUOTED_STRING, TOKEN_CHARS, quote, unquote

__all__ = ["ALGORITHMS", "DigestChallenge", "DigestCredentials", "authorization", "new_cnonce",
           "parse_challenge", "parse_credentials", "select_challenge", "verify"]

# Algorithm token (case-insensitive, RFC 7616 §3.3) → hashlib name.
ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_CANONICAL_ALGORITHM = {name.upper(): name for name in ALGORITHMS} | {
    f"{name.upper()}-SESS": f"{name}-sess" for name in ALGORITHMS}
# RFC 7616 §3.3: auth-param = token BWS "=" BWS ( token / quoted-string ), comma-separated.
_AUTH_PARAM = re.compile(
    rf"[ \t]*([{TOKEN_CHARS}]+)[ \t]*=[ \t]*({QUOTED_STRING}|[{TOKEN_CHARS}/:@?=]*)[ \t]*(,|\Z)",
    re.S)
_NC = re.compile(r"[0-9A-Fa-f]{8}")


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One Digest challenge (RFC 7616 §3.3); ``algorithm`` canonical (``SHA-256-sess``)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()  # offered qop options, lower-case; () = RFC 2069 style
    opaque: str | None = None
    stale: bool = False

    @property
    def supported(self) -> bool:
        """True if :func:`authorization` can answer this challenge."""
        return _hash_name(self.algorithm) is not None and (
            not self.qop or "auth" in self.qop or "auth-int" in self.qop)

    def __repr__(self) -> str:
        qop = ",".join(self.qop) or "-"
        return f"<DigestChallenge {self.algorithm} realm={self.realm!r} qop={qop}>"


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The parameters of an Authorization / Proxy-Authorization Digest value (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    cnonce: str | None = None
    nc: str | None = None  # 8 hex digits, as sent
    opaque: str | None = None

    def __repr__(self) -> str:
        return f"<DigestCredentials {self.algorithm} user={self.username!r} realm={self.realm!r}>"


def _parse_auth(value: str, kind: str) -> dict[str, str]:
    """``Digest k=v, k="v"…`` → {lower-case name: unquoted value}; the scheme must be Digest."""
    text = value.strip(" \t")
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest":
        raise ProtocolError("sip", 0, f"{kind}: scheme {scheme[:20]!r} is not Digest")
    params: dict[str, str] = {}
    pos, base = 0, len(value) - len(value.lstrip(" \t")) + len(scheme) + 1
    rest = rest.rstrip(" \t")
    while pos < len(rest):
        m = _AUTH_PARAM.match(rest, pos)
        if m is None or (not m[3] and m.end() < len(rest)):
            raise ProtocolError("sip", base + pos, f"{kind}: malformed parameter")
        name = m[1].lower()
        if name in params:  # RFC 7616 §3.3: each parameter at most once
            raise ProtocolError("sip", base + pos, f"{kind}: parameter {name!r} repeated")
        params[name] = unquote(m[2])
        pos = m.end()
    return params


def parse_challenge(header_value: str) -> DigestChallenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value holding one Digest challenge."""
    params = _parse_auth(header_value, "challenge")
    if "realm" not in params or "nonce" not in params:
        raise ProtocolError("sip", -1, "challenge: realm and nonce are required")
    algorithm = params.get("algorithm", "MD5")
    qop = tuple(q.strip(" \t").lower() for q in params["qop"].split(",")) if "qop" in params else ()
    return DigestChallenge(
        realm=params["realm"], nonce=params["nonce"],
        algorithm=_CANONICAL_ALGORITHM.get(algorithm.upper(), algorithm),
        qop=tuple(q for q in qop if q), opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true")


def select_challenge(header_values: list[str]) -> DigestChallenge | None:
    """The first supported Digest challenge among a response's header values, or None.

    RFC 8760 §2.4: the UAS lists challenges most preferred first and the UAC uses the topmost
    one it supports. Values that do not parse (another scheme, garbage) are skipped.
    """
    for value in header_values:
        try:
            challenge = parse_challenge(value)
        except ProtocolError:
            continue
        if challenge.supported:
            return challenge
    return None


def new_cnonce() -> str:
    """A fresh client nonce: 128 random bits, hex (RFC 7616 §3.4 cnonce)."""
    return secrets.token_hex(16)


def _hash_name(algorithm: str) -> str | None:
    name = ALGORITHMS.get(algorithm.removesuffix("-sess"))
    if name is None or name not in hashlib.algorithms_available:
        return None
    return name


def _response(algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
              nonce: str, qop: str | None, cnonce: str | None, nc: str | None,
              body: bytes) -> str:
    """The request-digest (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1); hex, lower-case."""
    hash_name = _hash_name(algorithm)
    if hash_name is None:
        raise ProtocolError("sip", -1, f"unsupported digest algorithm {algorithm[:30]!r}")

    def h(data: str | bytes) -> str:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        return hashlib.new(hash_name, raw).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):  # RFC 7616 §3.4.2: A1 adds the nonce and cnonce
        ha1 = h(f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = h(f"{method}:{uri}:{h(body)}" if qop == "auth-int" else f"{method}:{uri}")
    if qop is None:  # RFC 2069 compatibility (RFC 2617 §3.2.2.1)
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def authorization(challenge: DigestChallenge, method: str, uri: str, username: str,
                  password: str, *, cnonce: str, nc: int = 1, body: bytes = b"") -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` for one request.

    ``uri`` is the Request-URI as sent; ``nc`` counts the requests made with this nonce
    (start at 1); ``body`` only matters for qop=auth-int. qop=auth is used when offered, else
    auth-int, else (no qop in the challenge) the RFC 2069 form without cnonce and nc.
    """
    if "auth" in challenge.qop:
        qop: str | None = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    elif challenge.qop:
        raise ProtocolError("sip", -1, "challenge offers no supported qop")
    else:
        qop = None
    nc_text = f"{nc:08x}"
    response = _response(challenge.algorithm, username, challenge.realm, password, method, uri,
                         challenge.nonce, qop, cnonce, nc_text, body)
    parts = [f"username={quote(username)}", f"realm={quote(challenge.realm)}",
             f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}",
             f"response={quote(response)}", f"algorithm={challenge.algorithm}"]
    if qop is not None or challenge.algorithm.endswith("-sess"):
        parts.append(f"cnonce={quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if qop is not None:  # RFC 7616 §3.4: qop and nc are unquoted tokens
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)


def parse_credentials(header_value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization Digest value (the UAS side)."""
    params = _parse_auth(header_value, "credentials")
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in params]
    if missing:
        raise ProtocolError("sip", -1, f"credentials: missing {', '.join(missing)}")
    qop = params.get("qop")
    if qop is not None and ("cnonce" not in params or "nc" not in params):
        raise ProtocolError("sip", -1, "credentials: qop without cnonce and nc")
    nc = params.get("nc")
    if nc is not None and _NC.fullmatch(nc) is None:
        raise ProtocolError("sip", -1, "credentials: nc is not 8 hex digits")
    algorithm = params.get("algorithm", "MD5")
    return DigestCredentials(
        username=params["username"], realm=params["realm"], nonce=params["nonce"],
        uri=params["uri"], response=params["response"],
        algorithm=_CANONICAL_ALGORITHM.get(algorithm.upper(), algorithm),
        qop=qop.lower() if qop else None, cnonce=params.get("cnonce"), nc=nc,
        opaque=params.get("opaque"))


def verify(credentials: DigestCredentials | str, method: str, password: str, *,
           body: bytes = b"") -> bool:
    """True if ``credentials`` answer correctly for ``method`` with ``password``.

    Checks only the digest; the caller checks that realm, nonce (and its freshness), opaque
    and uri are the ones it issued and the request it got. Constant-time comparison.
    Unsupported algorithms or qop values verify as False.
    """
    if isinstance(credentials, str):
        credentials = parse_credentials(credentials)
    c = credentials
    if c.qop not in (None, "auth", "auth-int") or _hash_name(c.algorithm) is None:
        return False
    expected = _response(c.algorithm, c.username, c.realm, password, method, c.uri, c.nonce,
                         c.qop, c.cnonce, c.nc, body)
    return hmac.compare_digest(expected, c.response.lower())
