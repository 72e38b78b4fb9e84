"""The store's reads and writes for alerts (service/alerting.py): the numbers the rules look at,
and the ``alerts`` rows, locked for one evaluation. Each takes the caller's session and times;
nothing here reads a clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import DEAD, FAILED, FINISHED, QUEUED, Alert, Call, WebhookEvent

# pg_advisory_xact_lock key of an evaluation round: "ARSALERT" as a 64-bit integer
ADVISORY_LOCK = int.from_bytes(b"ARSALERT", "big")
# A call is counted by its end time, but looked up by its creation time (indexed): calls that
# ended within the window and were created within this much before it.
CALL_LOOKBACK = timedelta(days=1)


def _is_postgresql(s: AsyncSession) -> bool:
    return s.get_bind().dialect.name == "postgresql"


async def lock_alerts(s: AsyncSession) -> Sequence[Alert]:
    """Every alert row, locked until the transaction ends: on PostgreSQL an advisory lock
    serialises evaluation rounds across nodes (rows not yet inserted cannot be row-locked) and
    ``FOR UPDATE`` holds the rows against a concurrent :func:`get_alert_for_update`; SQLite's
    ``BEGIN IMMEDIATE`` already admits one writer at a time."""
    query = select(Alert).order_by(Alert.key)
    if _is_postgresql(s):
        await s.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK)))
        query = query.with_for_update()
    return (await s.scalars(query)).all()


async def get_alert_for_update(s: AsyncSession, key: str) -> Alert | None:
    """One alert row, locked (recording the outcome of a notification)."""
    return await s.get(Alert, key, with_for_update=True, populate_existing=True)


async def answer_counts(s: AsyncSession, since: datetime) -> tuple[int, int]:
    """(ended, answered): dialled calls (at least one attempt) that finished or failed at or
    after ``since``, and how many of them were answered."""
    query = select(func.count(), func.count(Call.answered_at)).where(
        Call.state.in_((FINISHED, FAILED)), Call.attempts > 0, Call.ended_at >= since,
        Call.created_at >= since - CALL_LOOKBACK)
    ended, answered = (await s.execute(query)).one()
    return int(ended), int(answered)


async def dead_letter_count(s: AsyncSession, since: datetime) -> int:
    """Webhook events that went dead at or after ``since``. The outbox keeps no time of death:
    ``next_attempt_at`` of a dead event is when its last attempt was due, which is when it died
    (give or take a polling interval)."""
    query = select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.status == DEAD, WebhookEvent.next_attempt_at >= since)
    return int(await s.scalar(query) or 0)


async def oldest_due_queued(s: AsyncSession, now: datetime) -> datetime | None:
    """Since when the longest-waiting queued call has been due (its ``not_before``), or None."""
    query = select(func.min(Call.not_before)).where(Call.state == QUEUED,
                                                    Call.not_before <= now)
    oldest: datetime | None = await s.scalar(query)
    return oldest


async def list_alerts(s: AsyncSession, *, state: str | None = None) -> Sequence[Alert]:
    """The alert rows (``state``: firing or resolved only), newest change first."""
    query = select(Alert)
    if state is not None:
        query = query.where(Alert.state == state)
    return (await s.scalars(query.order_by(Alert.since.desc(), Alert.key))).all()
