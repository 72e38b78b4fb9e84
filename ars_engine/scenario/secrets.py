"""Secret values (codes, PINs, card digits) and salted hashes.

A :class:`Secret` prints as asterisks: it can pass through logs, reprs, exceptions and JSON
encoders without leaking. Only :meth:`Secret.reveal` gives the value, and only comparisons and
the digit-clip speaker call it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random

MASK = "*"


class Secret:
    """A secret string. ``str()``/``repr()``/``format()`` give a mask of the same length."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return MASK * len(self._value)

    def __str__(self) -> str:
        return self.masked()

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return self.masked()

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:  # hashable but never by value
        return id(self)

    def __reduce__(self) -> str:  # never pickled in clear
        raise TypeError("a Secret cannot be pickled")


def reveal(value: object) -> str:
    """The clear text of a Secret, or str() of anything else."""
    return value.reveal() if isinstance(value, Secret) else str(value)


def constant_time_equals(a: object, b: object) -> bool:
    """Compare two values without leaking, through timing, how much of them matched."""
    return hmac.compare_digest(reveal(a).encode(), reveal(b).encode())


# Hash formats (the salt is text without '$'):
#   sha256$<salt>$<hex>                  hex = HMAC-SHA256(key=salt, msg=value)
#   pbkdf2_sha256$<iterations>$<salt>$<hex>  hex = PBKDF2-HMAC-SHA256(value, salt, iterations)
HASH_SCHEMES = ("sha256", "pbkdf2_sha256")


def make_hash(value: str, salt: str | None = None, *, scheme: str = "sha256",
              iterations: int = 100_000) -> str:
    """A salted hash of ``value`` in one of :data:`HASH_SCHEMES`."""
    salt = salt if salt is not None else _random.token_hex(8)
    if "$" in salt:
        raise ValueError("the salt must not contain '$'")
    if scheme == "sha256":
        digest = hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()
        return f"sha256${salt}${digest}"
    if scheme == "pbkdf2_sha256":
        digest = hashlib.pbkdf2_hmac("sha256", value.encode(), salt.encode(), iterations).hex()
        return f"pbkdf2_sha256${iterations}${salt}${digest}"
    raise ValueError(f"unknown hash scheme {scheme!r}; expected one of {', '.join(HASH_SCHEMES)}")


def hash_format_problem(stored: str) -> str | None:
    """Why ``stored`` is not a valid salted hash, or None when it is."""
    parts = stored.split("$")
    if parts[0] == "sha256" and len(parts) == 3:
        return None if _is_hex(parts[2], 64) else "the digest must be 64 hex digits"
    if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
        if not parts[1].isdigit() or not 1 <= int(parts[1]) <= 10_000_000:
            return "the iteration count must be a whole number from 1 to 10000000"
        return None if _is_hex(parts[3], 64) else "the digest must be 64 hex digits"
    return "expected sha256$<salt>$<hex> or pbkdf2_sha256$<iterations>$<salt>$<hex>"


def verify_hash(value: object, stored: object) -> bool:
    """True when ``value`` hashes to ``stored`` (constant-time; False on a malformed hash)."""
    text, ref = reveal(value), reveal(stored)
    if hash_format_problem(ref) is not None:
        return False
    parts = ref.split("$")
    if parts[0] == "sha256":
        digest = hmac.new(parts[1].encode(), text.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest, parts[2])
    digest = hashlib.pbkdf2_hmac("sha256", text.encode(), parts[2].encode(), int(parts[1])).hex()
    return hmac.compare_digest(digest, parts[3])


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdef" for c in value)
