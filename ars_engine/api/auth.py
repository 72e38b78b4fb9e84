"""API keys: ``Authorization: Bearer ars_<id>_<secret>`` on every ``/v1`` route but the OpenAPI
document. The key's tenant is put on the request (:data:`TENANT`); handlers scope everything to it.

A key is checked against the store (its keyed hash, its revocation, its tenant's ``disabled``
flag). A successful check is remembered for at most :data:`CACHE_SECONDS`, so a revoked key or a
disabled tenant stops working within that time; failures are never remembered.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from ..service.runtime import Services
from ..store import repo
from ..store.models import Tenant
from .problems import Problem

API_PREFIX = "/v1/"
PUBLIC_PATHS = frozenset({"/v1/openapi.json"})
CACHE_SECONDS = 5.0
CACHE_MAX_ENTRIES = 1024

# The app's services live under SERVICES (set by app.create_app; defined here, the lowest module
# that reads them, so that app → routes → auth imports have no cycle).
SERVICES = web.AppKey("services", Services)
TENANT = web.RequestKey("tenant", Tenant)


@dataclass(slots=True)
class TenantCache:
    """Recently verified keys: sha256(key) → (tenant, expiry on ``clock``)."""

    ttl: float = CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[Tenant, float]] = field(default_factory=dict)

    def get(self, digest: str) -> Tenant | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        tenant, expires = entry
        if self.clock() >= expires:
            del self._entries[digest]
            return None
        return tenant

    def put(self, digest: str, tenant: Tenant) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= CACHE_MAX_ENTRIES:
            self._entries.clear()  # crude, bounded, and a miss only costs one query
        self._entries[digest] = (tenant, self.clock() + self.ttl)

    def clear(self) -> None:
        self._entries.clear()


AUTH_CACHE = web.AppKey("auth_cache", TenantCache)


def _unauthorized(detail: str, error: str = "invalid_token") -> Problem:
    # RFC 6750 §3: the challenge names the scheme; "invalid_token" only when one was presented.
    challenge = 'Bearer realm="ars-engine"'
    if error:
        challenge += f', error="{error}"'
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def presented_key(request: web.Request) -> str:
    """The API key of the request; Problem 401 when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.strip().partition(" ")
    if not header:
        raise _unauthorized("an API key is required: Authorization: Bearer <key>", error="")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("expected Authorization: Bearer <key>", error="invalid_request")
    return key.strip()


async def tenant_for(app: web.Application, key: str) -> Tenant:
    """The tenant owning ``key``; Problem 401 when the key is unknown, revoked or disabled."""
    services = app[SERVICES]
    cache = app[AUTH_CACHE]
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    tenant = cache.get(digest)
    if tenant is None:
        async with services.store.session() as s, s.begin():
            tenant = await repo.authenticate(s, key, services.keys.api_key_pepper)
        if tenant is None:
            raise _unauthorized("the API key is not valid (unknown, revoked or disabled)")
        cache.put(digest, tenant)
    return tenant


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid API key under ``/v1/`` (except the public paths)."""
    if request.path.startswith(API_PREFIX) and request.path not in PUBLIC_PATHS:
        request[TENANT] = await tenant_for(request.app, presented_key(request))
    return await handler(request)
