"""Reads and writes on the store, one function per question. Each takes the caller's session
(the caller owns the transaction, so a state change and its outbox event commit together) and the
time (``now``): nothing in here reads a clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload

from ..errors import ArsError, FieldError
from .models import (
    ACTIVE_STATES,
    PENDING,
    QUEUED,
    TRANSITIONS,
    ApiKey,
    Call,
    CallTransition,
    IdempotencyRecord,
    Tenant,
    WebhookEvent,
)

API_KEY_PREFIX = "ars"
# ars_<key id: token_hex>_<secret: token_urlsafe>; anything else is refused before it reaches
# the database (NUL, surrogates from undecodable header bytes…) or the hash.
API_KEY = re.compile(rf"{API_KEY_PREFIX}_([0-9a-f]{{1,32}})_([A-Za-z0-9_-]{{1,150}})")


class InvalidTransition(ArsError):
    """A state change the call's state machine forbids (models.TRANSITIONS)."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# -- tenants and API keys --------------------------------------------------------------------------

async def get_tenant(s: AsyncSession, tenant_id: str) -> Tenant | None:
    return await s.get(Tenant, tenant_id)


async def list_tenants(s: AsyncSession) -> Sequence[Tenant]:
    return (await s.scalars(select(Tenant).order_by(Tenant.id))).all()


def _key_hash(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


async def create_api_key(s: AsyncSession, tenant_id: str, pepper: bytes, *, now: datetime,
                         label: str = "") -> tuple[ApiKey, str]:
    """A new key for the tenant; returns the row and the full key, which is shown once: only
    its keyed hash is stored. Format ``ars_<id>_<secret>``."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    row = ApiKey(id=key_id, tenant_id=tenant_id, key_hash=_key_hash(pepper, secret),
                 label=label, created_at=now)
    s.add(row)
    return row, f"{API_KEY_PREFIX}_{key_id}_{secret}"


async def authenticate(s: AsyncSession, presented: str, pepper: bytes) -> Tenant | None:
    """The tenant owning ``presented`` (a full API key), None when the key is unknown, revoked,
    malformed or its tenant disabled. The hash comparison is constant-time."""
    match = API_KEY.fullmatch(presented)
    if match is None:
        return None
    key_id, secret = match.groups()
    row = await s.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _key_hash(pepper, secret)):
        return None
    tenant = await s.get(Tenant, row.tenant_id)
    return tenant if tenant is not None and not tenant.disabled else None


# -- calls -----------------------------------------------------------------------------------------

def transition(s: AsyncSession, call: Call, to_state: str, now: datetime, *,
               reason: str | None = None, node: str | None = None) -> None:
    """Move ``call`` to ``to_state`` and record the move; InvalidTransition if not allowed."""
    if to_state not in TRANSITIONS[call.state]:
        raise InvalidTransition(f"call {call.id}: {call.state} → {to_state} is not allowed")
    s.add(CallTransition(call_id=call.id, from_state=call.state, to_state=to_state, at=now,
                         attempt=call.attempts, reason=reason, node=node))
    call.state = to_state
    call.updated_at = now


def add_call(s: AsyncSession | Session, call: Call, now: datetime) -> None:
    """A new call, queued; its first transition (none → queued) is recorded."""
    call.state = QUEUED
    # Column defaults fire only at INSERT; transition() and add_event() read these before it.
    if call.attempts is None:
        call.attempts = 0
    if call.next_event_seq is None:
        call.next_event_seq = 1
    s.add(call)
    s.add(CallTransition(call_id=call.id, from_state=None, to_state=QUEUED, at=now, attempt=0,
                         reason="created"))


def insert_new_call(s: Session, call: Call, now: datetime,
                    idempotency: IdempotencyRecord | None = None) -> None:
    """:func:`add_call` as plain INSERTs (the create hot path: the ORM's unit of work cost
    more CPU than the statements). ``call`` must be complete (state
    queued, every column set); it stays a transient object the caller may read."""
    # one parameter set each (a list would take the executemany path, slower for one row)
    s.execute(insert(_table(Call)), _row(call))
    s.execute(insert(_table(CallTransition)), {
        "call_id": call.id, "from_state": None, "to_state": QUEUED, "at": now, "attempt": 0,
        "reason": "created", "node": None})
    if idempotency is not None:
        s.execute(insert(_table(IdempotencyRecord)), _row(idempotency))


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _row(obj: Any) -> dict[str, Any]:
    return {column.key: getattr(obj, column.key) for column in obj.__table__.columns}


def call_query(tenant_id: str | None, call_id: str, *, transitions: bool = False,
               lock: bool = False) -> Select[Call]:
    """The query of :func:`get_call` (also run on a sync session by ``Store.run`` units)."""
    query = select(Call).where(Call.id == call_id)
    if tenant_id is not None:
        query = query.where(Call.tenant_id == tenant_id)
    if transitions:
        query = query.options(selectinload(Call.transitions))
    if lock:
        query = query.with_for_update()
    return query


async def get_call(s: AsyncSession, tenant_id: str | None, call_id: str, *,
                   transitions: bool = False, lock: bool = False) -> Call | None:
    """A call of ``tenant_id`` (None: any tenant, for the engine's own use)."""
    return (await s.scalars(call_query(tenant_id, call_id, transitions=transitions,
                                       lock=lock))).first()


def encode_cursor(created_at: datetime, call_id: str) -> str:
    raw = f"{created_at.isoformat()}|{call_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, call_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        # naive: the store refuses it; NUL: PostgreSQL refuses it (both would not be a 4xx)
        if created_at.tzinfo is None or not call_id.isprintable() or len(call_id) > 40:
            raise ValueError("not a cursor this API hands out")
        return created_at, call_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise FieldError("cursor", "invalid_cursor",
                         "not a cursor returned by this API (use next_cursor as given)") from exc


async def list_calls(s: AsyncSession, tenant_id: str, *, states: Sequence[str] = (),
                     scenario: str | None = None, destination: str | None = None,
                     created_from: datetime | None = None, created_to: datetime | None = None,
                     outcome: str | None = None, limit: int = 50, cursor: str | None = None
                     ) -> tuple[Sequence[Call], str | None]:
    """A page of the tenant's calls, newest first, and the cursor of the next page (None at the
    end). Keyset pagination on (created_at, id): stable while new calls arrive."""
    query = select(Call).where(Call.tenant_id == tenant_id)
    if states:
        query = query.where(Call.state.in_(states))
    if scenario:
        query = query.where(Call.scenario == scenario)
    if destination:
        query = query.where(Call.destination == destination)
    if outcome:
        query = query.where(Call.outcome == outcome)
    if created_from:
        query = query.where(Call.created_at >= created_from)
    if created_to:
        query = query.where(Call.created_at < created_to)
    return await page_of_calls(s, query, limit, cursor)


async def page_of_calls(s: AsyncSession, query: Select[Any], limit: int, cursor: str | None
                        ) -> tuple[Sequence[Call], str | None]:
    """One page of ``query``'s calls, newest first, after ``cursor``, and the next page's
    cursor (None at the end). Keyset pagination on (created_at, id): stable while new calls
    arrive."""
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where((Call.created_at < at)
                            | ((Call.created_at == at) & (Call.id < last_id)))
    rows = (await s.scalars(query.order_by(Call.created_at.desc(), Call.id.desc())
                            .limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None


def calls_to_query(tenant_id: str, destination: str, since: datetime) -> Select[Any]:
    """How many calls the tenant asked for to ``destination`` since ``since``."""
    return select(func.count()).select_from(Call).where(
        Call.tenant_id == tenant_id, Call.destination == destination, Call.created_at >= since)


async def count_calls_to(s: AsyncSession, tenant_id: str, destination: str,
                         since: datetime) -> int:
    """Calls the tenant asked for to ``destination`` since ``since`` (per-number rate limit)."""
    return int(await s.scalar(calls_to_query(tenant_id, destination, since)) or 0)


async def active_counts(s: AsyncSession, tenant_ids: Sequence[str]) -> dict[str, int]:
    query = (select(Call.tenant_id, func.count()).where(
        Call.state.in_(ACTIVE_STATES), Call.tenant_id.in_(tenant_ids)).group_by(Call.tenant_id))
    return {tenant: int(count) for tenant, count in (await s.execute(query)).all()}


async def active_destinations(s: AsyncSession, destinations: Sequence[str]) -> set[str]:
    query = select(Call.destination).where(Call.state.in_(ACTIVE_STATES),
                                           Call.destination.in_(destinations))
    return set((await s.scalars(query)).all())


async def due_calls(s: AsyncSession, now: datetime, limit: int, *, skip_locked: bool
                    ) -> Sequence[Call]:
    """Queued calls whose time has come, oldest first, locked for this transaction
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two nodes never take the same row; SQLite has
    one writer at a time, BEGIN IMMEDIATE)."""
    query = (select(Call).where(Call.state == QUEUED, Call.not_before <= now)
             .order_by(Call.not_before, Call.created_at).limit(limit))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return (await s.scalars(query)).all()


async def lock_tenants(s: AsyncSession, tenant_ids: Sequence[str]) -> dict[str, Tenant]:
    """The tenants, row-locked in id order (PostgreSQL) so that two nodes counting a tenant's
    active calls do it one after the other (its concurrency limit holds across nodes)."""
    query = select(Tenant).where(Tenant.id.in_(sorted(set(tenant_ids)))).order_by(Tenant.id)
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {t.id: t for t in (await s.scalars(query)).all()}


async def renew_leases(s: AsyncSession, node: str, call_ids: Sequence[str],
                       until: datetime) -> int:
    """Extend this node's leases on its running calls (the heartbeat)."""
    if not call_ids:
        return 0
    result = await s.execute(
        update(Call).where(Call.id.in_(call_ids), Call.lease_owner == node,
                           Call.state.in_(ACTIVE_STATES)).values(lease_expires_at=until))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def expired_calls(s: AsyncSession, now: datetime, limit: int, *, skip_locked: bool
                        ) -> Sequence[Call]:
    """Calls in progress whose node stopped renewing its lease (it died mid-call)."""
    query = (select(Call).where(Call.state.in_(ACTIVE_STATES), Call.lease_expires_at < now)
             .order_by(Call.lease_expires_at).limit(limit))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return (await s.scalars(query)).all()


# -- idempotency -----------------------------------------------------------------------------------

def request_fingerprint(key: bytes, body: Any) -> str:
    """A keyed hash of a request body (it may hold a code: a plain hash could be brute-forced)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def live_idempotency(s: Session, tenant_id: str, key: str,
                     now: datetime) -> IdempotencyRecord | None:
    """The record of (tenant, key) unless it expired; an expired one is deleted (the key may
    be used again)."""
    row = s.get(IdempotencyRecord, (tenant_id, key))
    if row is not None and row.expires_at <= now:
        s.delete(row)
        s.flush()
        return None
    return row


async def get_idempotency(s: AsyncSession, tenant_id: str, key: str,
                          now: datetime) -> IdempotencyRecord | None:
    """:func:`live_idempotency` on an async session."""
    return await s.run_sync(lambda sync: live_idempotency(sync, tenant_id, key, now))


# -- webhook outbox --------------------------------------------------------------------------------

def add_event(s: AsyncSession, call: Call, event_type: str, payload: dict[str, Any],
              now: datetime) -> WebhookEvent | None:
    """Put an event for the call's callback URL in the outbox (same transaction as the state
    it reports). None when the call has no callback URL. The body carries the event id."""
    if not call.callback_url:
        return None
    event_id = new_id("evt")
    seq = call.next_event_seq
    call.next_event_seq = seq + 1
    body = {"id": event_id, "type": event_type, "created_at": iso(now), "sequence": seq,
            "call": payload}
    event = WebhookEvent(id=event_id, call_id=call.id, tenant_id=call.tenant_id, seq=seq,
                         type=event_type, url=call.callback_url,
                         body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                         status=PENDING, attempts=0, next_attempt_at=now, created_at=now)
    s.add(event)
    return event


async def due_events(s: AsyncSession, now: datetime, limit: int, *, skip_locked: bool
                     ) -> Sequence[WebhookEvent]:
    """Pending events whose time has come and that are first in line for their call (ordered
    delivery: an event waits until every earlier one of its call is delivered or dead), not
    leased by a live node."""
    earlier = WebhookEvent.__table__.alias("earlier")
    blocked = (select(earlier.c.id).where(earlier.c.call_id == WebhookEvent.call_id,
                                          earlier.c.seq < WebhookEvent.seq,
                                          earlier.c.status == PENDING).exists())
    query = (select(WebhookEvent).where(
        WebhookEvent.status == PENDING, WebhookEvent.next_attempt_at <= now,
        (WebhookEvent.lease_expires_at.is_(None)) | (WebhookEvent.lease_expires_at < now),
        ~blocked).order_by(WebhookEvent.next_attempt_at).limit(limit))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return (await s.scalars(query)).all()


def events_query(tenant_id: str, *, call_id: str | None = None, status: str | None = None,
                 limit: int = 100) -> Select[WebhookEvent]:
    """The query of :func:`list_events`, newest first."""
    query = select(WebhookEvent).where(WebhookEvent.tenant_id == tenant_id)
    if call_id:
        query = query.where(WebhookEvent.call_id == call_id)
    if status:
        query = query.where(WebhookEvent.status == status)
    return query.order_by(WebhookEvent.created_at.desc(), WebhookEvent.seq.desc()).limit(limit)


async def list_events(s: AsyncSession, tenant_id: str, *, call_id: str | None = None,
                      status: str | None = None, limit: int = 100) -> Sequence[WebhookEvent]:
    return (await s.scalars(events_query(tenant_id, call_id=call_id, status=status,
                                         limit=limit))).all()


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the API and the webhooks write times."""
    return moment.isoformat().replace("+00:00", "Z")

