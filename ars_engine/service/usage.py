"""Usage per tenant and month, and the settlement rows behind it (the rules of billing).

Settlement rules. A month is ``[first day 00:00 UTC, first day of the next month 00:00 UTC)``
and a call belongs to the month of its ``created_at`` (UTC), whatever happened to it later.
Within a month, for each tenant:

* **calls**: the calls created (every state, canceled and refused included);
* **answered**: calls with an ``answered_at`` (the person picked up);
* **verified**: calls in state ``finished`` with outcome ``success``;
* **billable**: calls in state ``finished``: the person was reached and the scenario ran to its
  end, whatever its verdict (success, failed, refused, timeout, callee_hangup…). A call that
  failed after answer because of the engine (state ``failed``, e.g. ``engine_restart``, an
  error) is *not* billable, nor is one never answered;
* **answer rate** = answered / calls and **success rate** = verified / calls, both over the calls
  created (None when there are none).

The settlement CSV lists one row per call with the same flags (``billable``, ``verified`` as 1/0),
times in ISO 8601 UTC with a ``Z`` (to the millisecond), ``duration_seconds`` from answer to end
in whole seconds, every started second counted (0 when not answered), and the destination
masked: a phone number is personal data, so only its country code, (Korean) range code and last
4 digits are kept (``+82 10-****-5678``).

Every query here runs on SQLite and PostgreSQL alike; the caller owns the session.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import String, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ..store.models import FINISHED, Call, Tenant
from .policy import mask_number

SUCCESS = "success"
KOREA = "82"
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

SETTLEMENT_FIELDS = ("call_id", "tenant_id", "reference", "scenario", "destination",
                     "created_at", "answered_at", "ended_at", "duration_seconds", "state",
                     "outcome", "attempts", "billable", "verified")


class _Rates:
    """Answer and success rates over the calls counted (None when there are none)."""

    __slots__ = ()
    calls: int
    answered: int
    verified: int

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.calls if self.calls else None

    @property
    def success_rate(self) -> float | None:
        return self.verified / self.calls if self.calls else None


@dataclass(frozen=True, slots=True)
class UsageRow(_Rates):
    """One tenant's month."""

    tenant_id: str
    tenant_name: str
    calls: int
    answered: int
    verified: int
    billable: int


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """One call as it is settled (destination already masked)."""

    call_id: str
    tenant_id: str
    reference: str | None
    scenario: str
    destination: str
    created_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int
    state: str
    outcome: str | None
    attempts: int
    billable: int
    verified: int


@dataclass(frozen=True, slots=True)
class DayRates(_Rates):
    """One UTC day: counts of the calls created that day, and their rates."""

    day: date
    calls: int
    answered: int
    verified: int


# -- months -----------------------------------------------------------------------------------

def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """``[start, end)`` of a month in UTC, as aware datetimes."""
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1 to 12, got {month}")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-11"`` → ``(2026, 11)``; ValueError saying what was expected otherwise."""
    value = text.strip()
    year, sep, month = value.partition("-")
    if (not sep or len(year) != 4 or len(month) != 2 or not (year + month).isascii()
            or not (year + month).isdigit()):
        raise ValueError(f"month {text!r} is not written YYYY-MM (for example 2026-11)")
    if not 1 <= int(month) <= 12:
        raise ValueError(f"month {text!r}: the month must be 01 to 12")
    if int(year) < 1970:
        raise ValueError(f"month {text!r}: the year must be 1970 or later")
    return int(year), int(month)


# -- queries ----------------------------------------------------------------------------------

def _answered() -> ColumnElement[int]:
    return case((Call.answered_at.is_not(None), 1), else_=0)


def _verified() -> ColumnElement[int]:
    return case((and_(Call.state == FINISHED, Call.outcome == SUCCESS), 1), else_=0)


def _billable() -> ColumnElement[int]:
    return case((Call.state == FINISHED, 1), else_=0)


def _in_range(start: datetime, end: datetime, tenant_id: str | None) -> list[ColumnElement[bool]]:
    where = [Call.created_at >= start, Call.created_at < end]
    if tenant_id is not None:
        where.append(Call.tenant_id == tenant_id)
    return where


async def usage_by_tenant(session: AsyncSession, start: datetime, end: datetime,
                          tenant_id: str | None) -> list[UsageRow]:
    """Each tenant's counts for calls created in ``[start, end)`` (one aggregate query; tenants
    without calls are left out), ordered by tenant id. ``tenant_id`` narrows to one tenant."""
    query = (select(Call.tenant_id, Tenant.name, func.count(Call.id),
                    func.sum(_answered()), func.sum(_verified()), func.sum(_billable()))
             .join(Tenant, Tenant.id == Call.tenant_id)
             .where(*_in_range(start, end, tenant_id))
             .group_by(Call.tenant_id, Tenant.name)
             .order_by(Call.tenant_id))
    rows = (await session.execute(query)).all()
    return [UsageRow(tid, name, int(calls), int(answered or 0), int(verified or 0),
                     int(billable or 0))
            for tid, name, calls, answered, verified, billable in rows]


async def settlement_rows(session: AsyncSession, start: datetime, end: datetime,
                          tenant_id: str | None, batch: int = 1000
                          ) -> AsyncIterator[SettlementRow]:
    """Every call created in ``[start, end)``, oldest first, ``batch`` rows per query (keyset
    pagination on ``(created_at, id)``: each query starts after the last row of the one before,
    so the cost does not grow with the page number and no row is skipped or repeated)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    columns = (Call.id, Call.tenant_id, Call.reference, Call.scenario, Call.destination,
               Call.created_at, Call.answered_at, Call.ended_at, Call.state, Call.outcome,
               Call.attempts)
    after: tuple[datetime, str] | None = None
    while True:
        query = select(*columns).where(*_in_range(start, end, tenant_id))
        if after is not None:
            at, last_id = after
            query = query.where(or_(Call.created_at > at,
                                    and_(Call.created_at == at, Call.id > last_id)))
        rows = (await session.execute(
            query.order_by(Call.created_at, Call.id).limit(batch))).all()
        for row in rows:
            yield settlement_row(*row)
        if len(rows) < batch:
            return
        after = (rows[-1].created_at, rows[-1].id)


def settlement_row(call_id: str, tenant_id: str, reference: str | None, scenario: str,
                   destination: str, created_at: datetime, answered_at: datetime | None,
                   ended_at: datetime | None, state: str, outcome: str | None,
                   attempts: int | None) -> SettlementRow:
    """A call's columns as a settlement row (the rules of the module docstring)."""
    duration = 0
    if answered_at is not None and ended_at is not None and ended_at > answered_at:
        duration = math.ceil((ended_at - answered_at).total_seconds())
    return SettlementRow(
        call_id=call_id, tenant_id=tenant_id, reference=reference, scenario=scenario,
        destination=mask_destination(destination), created_at=created_at,
        answered_at=answered_at, ended_at=ended_at, duration_seconds=duration, state=state,
        outcome=outcome, attempts=attempts or 0, billable=int(state == FINISHED),
        verified=int(state == FINISHED and outcome == SUCCESS))


def _day_expression(dialect: str) -> ColumnElement[str]:
    # Both give the UTC day as text 'YYYY-MM-DD'. SQLite stores naive UTC text; PostgreSQL a
    # timestamptz, turned to UTC first so the session's time zone plays no part.
    if dialect == "postgresql":
        return func.to_char(func.timezone(literal_column("'UTC'"), Call.created_at),
                            literal_column("'YYYY-MM-DD'"), type_=String)
    return func.strftime(literal_column("'%Y-%m-%d'"), Call.created_at, type_=String)


async def daily_rates(session: AsyncSession, start: datetime, end: datetime,
                      tenant_id: str | None) -> list[DayRates]:
    """One :class:`DayRates` per UTC day of ``[start, end)``, days without calls included
    (counts 0, rates None). Grouped by day in the database."""
    dialect = session.get_bind().dialect.name
    day = _day_expression(dialect).label("day")
    query = (select(day, func.count(Call.id), func.sum(_answered()), func.sum(_verified()))
             .where(*_in_range(start, end, tenant_id))
             .group_by(day)  # rendered as the expression: the same SQL text on both
             .order_by(day))
    counts = {str(d): (int(c), int(a or 0), int(v or 0))
              for d, c, a, v in (await session.execute(query)).all()}
    days = []
    moment = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while moment < end:
        calls, answered, verified = counts.get(moment.date().isoformat(), (0, 0, 0))
        days.append(DayRates(moment.date(), calls, answered, verified))
        moment += timedelta(days=1)
    return days


# -- masking and CSV --------------------------------------------------------------------------

def mask_destination(e164: str) -> str:
    """A destination for the settlement file: ``+821012345678`` → ``+82 10-****-5678``,
    ``+12125550100`` → ``+1 ******-0100``; anything not E.164 is masked entirely."""
    masked = mask_number(e164)
    if not masked.startswith("+") or "*" not in masked:
        return masked
    digits = masked[1:]
    head = digits[: digits.index("*")]
    stars = digits[len(head): len(digits) - 4]
    tail = digits[-4:]
    if head.startswith(KOREA) and len(head) > len(KOREA):
        return f"+{KOREA} {head[len(KOREA):]}-{stars}-{tail}"
    return f"+{head} {stars}-{tail}"


def neutralise(value: str) -> str:
    """Text a spreadsheet will not run as a formula: a leading ``= + - @`` (or tab, CR) gets a
    ``'`` in front (OWASP's advice for CSV injection)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_time(moment: datetime | None) -> str:
    """ISO 8601 in UTC to the millisecond with a ``Z``; empty for no time."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _csv_line(fields: list[str | int]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)  # RFC 4180: CRLF, "" escapes
    return buffer.getvalue()


def settlement_csv_header() -> str:
    """The header line (with its CRLF). The caller writes the file as UTF-8 and puts a BOM
    (``"\\ufeff"``) before this line, so that Excel reads Korean text as UTF-8."""
    return _csv_line(list(SETTLEMENT_FIELDS))


def settlement_csv_line(row: SettlementRow) -> str:
    """One row as an RFC 4180 CSV line (with its CRLF): quoted where needed, text fields
    neutralised against formula injection, times ISO 8601 UTC with ``Z``."""
    return _csv_line([
        neutralise(row.call_id), neutralise(row.tenant_id), neutralise(row.reference or ""),
        neutralise(row.scenario), neutralise(row.destination), csv_time(row.created_at),
        csv_time(row.answered_at), csv_time(row.ended_at), row.duration_seconds,
        neutralise(row.state), neutralise(row.outcome or ""), row.attempts, row.billable,
        row.verified])
