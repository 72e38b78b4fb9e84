"""Operator passwords: scrypt (RFC 7914) from the standard library, stored as
``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. Verification is constant-time and reads the
parameters from the stored string, so they can be raised later without a migration."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1  # ~16 MB and ~50 ms per hash on one core: OWASP's scrypt minimum
MIN_LENGTH = 10
MAX_LENGTH = 256  # scrypt takes any length; a cap keeps a huge form field from costing much


class WeakPassword(ValueError):
    """The password does not meet the policy (the message says which rule, never the text)."""


def check_policy(password: str, username: str = "") -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")
    if username and username.lower() in password.lower():
        raise WeakPassword("a password must not contain the user name")
    if len(set(password)) < 4:
        raise WeakPassword("a password needs at least 4 different characters")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return "$".join(("scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for any malformed ``stored`` value."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > MAX_LENGTH:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected), maxmem=2**26)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def dummy_hash() -> str:
    """A hash of nothing anyone types: checked when the user name is unknown, so that a wrong
    name costs as much time as a wrong password (no user enumeration by timing)."""
    return hash_password(secrets.token_hex(16))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
