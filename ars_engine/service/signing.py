"""Webhook signatures: ``X-ARS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The signed text is ``f"{t}."`` followed by the raw request body, keyed with the tenant's secret
(the text ``whsec_…`` as UTF-8 bytes). Binding the timestamp into the MAC lets a receiver refuse
replays older than a tolerance; several ``v1=`` entries may appear while a secret is rotated
(one per live secret), and other schemes (``v0=``…) are ignored so new ones can be added later.

This file is self-contained on purpose: standard library only, no import from ``ars_engine``.
The verification service (and tenants who want a reference) copy it as is; keep it that way.
"""

from __future__ import annotations

import hashlib
import hmac
import math

__all__ = ["DEFAULT_TOLERANCE", "HEADER", "SignatureError", "sign", "verify"]

HEADER = "X-ARS-Signature"
DEFAULT_TOLERANCE = 300  # seconds either side of the receiver's clock
SCHEME = "v1"
_HEX = frozenset("0123456789abcdef")
_SIGNATURE_HEX_LENGTH = 64  # SHA-256
# A Unix time in seconds has 10 digits until the year 2286; a bound also keeps int() away from
# its 4300-digit limit on hostile input.
_MAX_TIMESTAMP_DIGITS = 12

REASONS = ("malformed", "no_signature", "too_old", "in_future", "mismatch")


class SignatureError(ValueError):
    """A webhook signature header that does not verify. ``reason`` is one of ``malformed``,
    ``no_signature``, ``too_old``, ``in_future``, ``mismatch``; the message never contains the
    secret or a signature."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    if not secret:
        raise ValueError("the signing secret is empty")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("the body must be bytes (the raw request body, not decoded text)")
    signed = str(timestamp).encode("ascii") + b"." + bytes(body)
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-ARS-Signature`` header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative integer (Unix seconds)")
    return f"t={timestamp},{SCHEME}={_mac(secret, timestamp, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    """``(timestamp, v1 signatures)``; SignatureError ``malformed``/``no_signature``."""
    if not isinstance(header, str) or not header.strip():
        raise SignatureError("malformed", f"the {HEADER} header is missing or empty")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise SignatureError("malformed", f"{HEADER}: expected key=value items")
        if key == "t":
            if timestamp is not None:
                raise SignatureError("malformed", f"{HEADER}: more than one timestamp")
            if not (0 < len(value) <= _MAX_TIMESTAMP_DIGITS and value.isascii()
                    and value.isdigit()):
                raise SignatureError("malformed", f"{HEADER}: the timestamp is not Unix seconds")
            timestamp = int(value)
        elif key == SCHEME:
            if len(value) != _SIGNATURE_HEX_LENGTH or not set(value) <= _HEX:
                raise SignatureError("malformed",
                                     f"{HEADER}: a v1 signature must be 64 lowercase hex digits")
            signatures.append(value)
        # Any other scheme is someone else's (or a future version's): ignored, not an error.
    if timestamp is None:
        raise SignatureError("malformed", f"{HEADER}: no timestamp (t=)")
    if not signatures:
        raise SignatureError("no_signature", f"{HEADER}: no {SCHEME} signature")
    return timestamp, signatures


def verify(secret: str, header: str, body: bytes, *, now: float,
           tolerance: float = DEFAULT_TOLERANCE) -> int:
    """Check a ``X-ARS-Signature`` header against ``body`` and return its timestamp.

    Any ``v1`` entry matching is enough (secret rotation); the comparison is constant-time.
    The signature is checked before the age, so ``too_old``/``in_future`` mean a genuine but
    stale (replayed, long-queued) or clock-skewed delivery. A timestamp exactly ``tolerance``
    seconds away is accepted. Raises SignatureError otherwise.
    """
    # NaN would make both age comparisons false and accept any timestamp.
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError("tolerance must be a finite number >= 0")
    if not math.isfinite(now):
        raise ValueError("now must be a finite Unix time")
    timestamp, signatures = _parse(header)
    expected = _mac(secret, timestamp, body).encode("ascii")
    # Compare against every entry, no early exit: the time taken does not say which one matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.encode("ascii"))
    if not matched:
        raise SignatureError("mismatch", f"{HEADER}: no signature matches the body and secret")
    age = now - timestamp
    if age > tolerance:
        raise SignatureError("too_old", f"{HEADER}: signed {age:.0f} s ago, more than the "
                                        f"{tolerance:g} s allowed")
    if -age > tolerance:
        raise SignatureError("in_future", f"{HEADER}: signed {-age:.0f} s in the future, more "
                                          f"than the {tolerance:g} s allowed")
    return timestamp
