"""HTTP calls to the verification core made mid-call (webhook steps, remote verify).

Bodies may hold entered digits (remote verify), so nothing here logs a body. Every request is
signed when a secret is configured: ``X-ARS-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
t + "." + body)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

log = logging.getLogger("ars_engine.core_http")


@dataclass(frozen=True, slots=True)
class CoreAnswer:
    """The core's answer: HTTP status (0 when none), parsed JSON, or why it failed."""

    status: int
    json: Any = None
    error: str | None = None


class CoreClient(Protocol):
    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float) -> CoreAnswer:
        """POST ``body`` as JSON; never raises for network or HTTP errors."""
        ...


def sign(secret: bytes, body: bytes, now: int | None = None) -> str:
    """The ``X-ARS-Signature`` header value for ``body``."""
    t = int(time.time()) if now is None else now
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class AiohttpCoreClient:
    """:class:`CoreClient` over one aiohttp session; close it with :meth:`close`."""

    def __init__(self, *, signing_secret: bytes | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self._secret = signing_secret
        self._session = session
        self._own_session = session is None

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float) -> CoreAnswer:
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self._secret:
            headers["X-ARS-Signature"] = sign(self._secret, data)
        session = await self._get_session()
        try:
            # No redirects: a 3xx would re-send the body (entered digits, for a remote verify)
            # to a URL nobody validated.
            async with session.post(url, data=data, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                text = await response.text()
                try:
                    parsed = json.loads(text) if text.strip() else None
                except ValueError:
                    parsed = None
                if response.status >= 300:
                    return CoreAnswer(response.status, parsed, f"HTTP {response.status}")
                return CoreAnswer(response.status, parsed)
        except TimeoutError:
            return CoreAnswer(0, None, f"no answer within {timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("core request to %s failed: %s", url, type(exc).__name__)
            return CoreAnswer(0, None, f"{type(exc).__name__}: {exc}".split("\n")[0][:200])

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None
