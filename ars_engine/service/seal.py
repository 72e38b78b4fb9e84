"""Secret call parameters at rest: sealed with AES-256-GCM until the call ends.

A queued call must survive a restart (and, with PostgreSQL, be placed by another node), so its
code or PIN hash has to be stored somewhere; DESIGN.md forbids clear text. The secret parameters
are sealed with a key derived from the master key, bound to the call id (the associated data), and
the column is cleared when the call reaches a terminal state.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ArsError

NONCE_BYTES = 12
PREFIX = "v1."


class SealError(ArsError):
    """A sealed value could not be opened (wrong master key, or the row was tampered with)."""


def seal(key: bytes, call_id: str, values: Mapping[str, str]) -> str:
    """Encrypt ``values`` for ``call_id``: ``v1.<base64(nonce | ciphertext+tag)>``."""
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(dict(values), separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plain, call_id.encode())
    return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def unseal(key: bytes, call_id: str, token: str) -> dict[str, str]:
    """The values sealed by :func:`seal` for the same ``call_id``; SealError otherwise."""
    if not token.startswith(PREFIX):
        raise SealError(f"call {call_id}: sealed parameters in an unknown format")
    try:
        raw = base64.b64decode(token[len(PREFIX):], validate=True)
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], call_id.encode())
    except (ValueError, InvalidTag) as exc:
        raise SealError(f"call {call_id}: sealed parameters cannot be opened (another master "
                        "key, or changed in the database)") from exc
    values = json.loads(plain)
    if not isinstance(values, dict):
        raise SealError(f"call {call_id}: sealed parameters are not a mapping")
    return {str(k): str(v) for k, v in values.items()}
