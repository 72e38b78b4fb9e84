"""The console's reads: live calls, history search, one call with its story, tenants.
``tenant_id`` None means every tenant (an admin's view)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..store import repo
from ..store.models import ACTIVE_STATES, QUEUED, Call, Tenant, WebhookEvent

LIVE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    q: str = ""
    state: str = ""
    outcome: str = ""
    scenario: str = ""
    tenant: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str | None = None
    limit: int = 50


def _scoped(query: Select[Any], tenant_id: str | None) -> Select[Any]:
    return query if tenant_id is None else query.where(Call.tenant_id == tenant_id)


async def live_calls(s: AsyncSession, tenant_id: str | None) -> tuple[Sequence[Call], int, int]:
    """Running and queued calls (oldest first, at most LIVE_LIMIT) and the two counts."""
    query = _scoped(select(Call).where(Call.state.in_((*ACTIVE_STATES, QUEUED))), tenant_id)
    rows = (await s.scalars(query.order_by(Call.created_at, Call.id).limit(LIVE_LIMIT))).all()
    counts = select(Call.state, func.count()).where(Call.state.in_((*ACTIVE_STATES, QUEUED)))
    if tenant_id is not None:
        counts = counts.where(Call.tenant_id == tenant_id)
    by_state: dict[str, int] = {state: n for state, n in
                                (await s.execute(counts.group_by(Call.state))).all()}
    active = sum(n for state, n in by_state.items() if state in ACTIVE_STATES)
    return rows, active, by_state.get(QUEUED, 0)


async def search_calls(s: AsyncSession, tenant_id: str | None, f: HistoryFilter
                       ) -> tuple[Sequence[Call], str | None]:
    """A page of calls, newest first, and the next page's cursor (keyset on created_at, id).
    ``q`` matches a call id or a reference exactly, or the destination's last digits."""
    query = _scoped(select(Call), tenant_id)
    if f.tenant and tenant_id is None:
        query = query.where(Call.tenant_id == f.tenant)
    q = f.q.strip()
    if q:
        digits = "".join(c for c in q if c.isdigit())
        match = [Call.id == q, Call.reference == q]
        if digits and len(digits) >= 3:
            match.append(Call.destination.endswith(digits))
        query = query.where(or_(*match))
    if f.state:
        query = query.where(Call.state == f.state)
    if f.outcome:
        query = query.where(Call.outcome == f.outcome)
    if f.scenario:
        query = query.where(Call.scenario == f.scenario)
    if f.created_from:
        query = query.where(Call.created_at >= f.created_from)
    if f.created_to:
        query = query.where(Call.created_at < f.created_to)
    return await repo.page_of_calls(s, query, f.limit, f.cursor)


async def call_story(s: AsyncSession, tenant_id: str | None, call_id: str
                     ) -> tuple[Call, Sequence[WebhookEvent]] | None:
    query = _scoped(select(Call).where(Call.id == call_id), tenant_id)
    call = (await s.scalars(query.options(selectinload(Call.transitions)))).first()
    if call is None:
        return None
    events = (await s.scalars(select(WebhookEvent).where(WebhookEvent.call_id == call_id)
                              .order_by(WebhookEvent.seq))).all()
    return call, events


async def tenants(s: AsyncSession) -> Sequence[Tenant]:
    return (await s.scalars(select(Tenant).order_by(Tenant.id))).all()


async def distinct_outcomes(s: AsyncSession, tenant_id: str | None) -> list[str]:
    """Outcomes seen in the calls (for the history filter; read from ix_calls_state_outcome)."""
    query = select(Call.outcome).where(Call.outcome.is_not(None)).distinct()
    if tenant_id is not None:
        query = query.where(Call.tenant_id == tenant_id)
    return sorted(o for o in (await s.scalars(query.limit(100))).all() if o)
