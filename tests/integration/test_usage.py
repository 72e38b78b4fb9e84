"""Usage and settlement (ars_engine.service.usage) on SQLite and on a real PostgreSQL: month
boundaries, the billing definitions, the tenant filter, daily rates, and the settlement CSV
(round trip, masking, formula injection, keyset pagination)."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from ars_engine.service import usage
from ars_engine.service.usage import SettlementRow, UsageRow
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import (
    ANSWERED,
    CANCELED,
    FAILED,
    FINISHED,
    QUEUED,
    Call,
    Tenant,
)

NOV_START, NOV_END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
MID = datetime(2026, 11, 15, 9, 30, tzinfo=UTC)
DESTINATION = "+821012345678"


async def add_tenants(store: Store, *ids: str) -> None:
    async with store.session() as s, s.begin():
        for tenant_id in ids:
            s.add(Tenant(id=tenant_id, name=f"{tenant_id} 주식회사", created_at=NOV_START))


def make_call(tenant_id: str, created: datetime, state: str = QUEUED, *,
              outcome: str | None = None, answered: float | None = None,
              ended: float | None = None, reference: str | None = None,
              destination: str = DESTINATION, attempts: int = 1,
              call_id: str | None = None) -> Call:
    """A call in ``state``; ``answered``/``ended`` are seconds after ``created``."""
    return Call(id=call_id or repo.new_id("call"), tenant_id=tenant_id, scenario="type_c",
                scenario_sha256="0" * 64, destination=destination, params={},
                retry_policy={}, attempts=attempts, not_before=created, created_at=created,
                updated_at=created, next_event_seq=1, reference=reference, state=state,
                outcome=outcome,
                answered_at=created + timedelta(seconds=answered) if answered is not None
                else None,
                ended_at=created + timedelta(seconds=ended) if ended is not None else None)


async def add_calls(store: Store, *calls: Call) -> None:
    async with store.session() as s, s.begin():
        for call in calls:
            state = call.state
            repo.add_call(s, call, call.created_at)
            call.state = state  # add_call queues; these tests need the final state only


async def by_tenant(store: Store, start: datetime = NOV_START, end: datetime = NOV_END,
                    tenant_id: str | None = None) -> list[UsageRow]:
    async with store.session() as s:
        return await usage.usage_by_tenant(s, start, end, tenant_id)


async def settlement(store: Store, tenant_id: str | None = None, *, batch: int = 1000,
                     start: datetime = NOV_START, end: datetime = NOV_END
                     ) -> list[SettlementRow]:
    async with store.session() as s:
        return [row async for row in usage.settlement_rows(s, start, end, tenant_id, batch)]


# -- months (pure) ------------------------------------------------------------------------------

@pytest.mark.parametrize(("year", "month", "start", "end"), [
    (2026, 11, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    (2026, 12, datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    (2028, 2, datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
])
def test_month_bounds_are_utc_and_half_open(year: int, month: int, start: datetime,
                                            end: datetime) -> None:
    assert usage.month_bounds(year, month) == (start, end)
    assert usage.month_bounds(year, month)[0].tzinfo is UTC


@pytest.mark.parametrize(("text", "expected"), [("2026-11", (2026, 11)), (" 2026-01 ", (2026, 1))])
def test_parse_month(text: str, expected: tuple[int, int]) -> None:
    assert usage.parse_month(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2026-1", "YYYY-MM"), ("2026/11", "YYYY-MM"), ("26-11", "YYYY-MM"), ("", "YYYY-MM"),
    ("2026-11-01", "YYYY-MM"), ("２０２６-11", "YYYY-MM"), ("2026-13", "01 to 12"),
    ("2026-00", "01 to 12"), ("1900-01", "1970"),
])
def test_parse_month_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        usage.parse_month(text)


@pytest.mark.parametrize(("e164", "masked"), [
    ("+821012345678", "+82 10-****-5678"),
    ("+82234567890", "+82 2-****-7890"),  # Seoul
    ("+82212345678", "+82 *****-5678"),  # not a valid Korean number: no range code kept
    ("+827012345678", "+82 70-****-5678"),
    ("+12125550100", "+1 ******-0100"),
    ("+441632960961", "+44 ******-0961"),
    ("not a number", "************"),
])
def test_destinations_are_masked(e164: str, masked: str) -> None:
    assert usage.mask_destination(e164) == masked


@pytest.mark.parametrize(("value", "safe"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2", "'-2"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("order-1", "order-1"), ("주문 1", "주문 1"),
    ("", ""),
])
def test_formulas_are_neutralised(value: str, safe: str) -> None:
    assert usage.neutralise(value) == safe


# -- usage per tenant ----------------------------------------------------------------------------

async def test_each_definition_counts_what_the_settlement_rules_say(store: Store) -> None:
    await add_tenants(store, "acme")
    await add_calls(
        store,
        make_call("acme", MID, FINISHED, outcome="success", answered=5, ended=40),
        make_call("acme", MID, FINISHED, outcome="failed", answered=5, ended=60),
        make_call("acme", MID, FINISHED, outcome="refused", answered=3, ended=30),
        make_call("acme", MID, FINISHED, outcome="callee_hangup", answered=3, ended=9),
        make_call("acme", MID, FAILED, outcome="engine_restart", answered=4, ended=20),
        make_call("acme", MID, FAILED, outcome="no_answer", ended=30),
        make_call("acme", MID, CANCELED, outcome="canceled", ended=1),
        make_call("acme", MID, QUEUED),
        make_call("acme", MID, ANSWERED, answered=2),
    )
    (row,) = await by_tenant(store)
    assert row == UsageRow("acme", "acme 주식회사", calls=9, answered=6, verified=1,
                           billable=4)
    assert row.answer_rate == pytest.approx(6 / 9)
    assert row.success_rate == pytest.approx(1 / 9)


async def test_month_boundaries_follow_created_at_in_utc(store: Store) -> None:
    await add_tenants(store, "acme")
    last_instant = datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)
    await add_calls(
        store,
        make_call("acme", datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC), call_id="oct"),
        make_call("acme", NOV_START, call_id="nov_first"),
        make_call("acme", last_instant, call_id="nov_last"),
        make_call("acme", NOV_END, call_id="dec_first"),
        # created in November, answered and ended in December: still November's
        make_call("acme", datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC), FINISHED,
                  outcome="success", answered=20, ended=80, call_id="nov_spans"),
    )
    (row,) = await by_tenant(store)
    assert (row.calls, row.billable) == (3, 1)
    assert [r.call_id for r in await settlement(store)] == ["nov_first", "nov_spans",
                                                            "nov_last"]
    dec_start, dec_end = usage.month_bounds(2026, 12)
    assert [r.call_id for r in await settlement(store, start=dec_start, end=dec_end)] == [
        "dec_first"]


async def test_tenant_filter_and_tenants_without_calls(store: Store) -> None:
    await add_tenants(store, "acme", "beta", "idle")
    await add_calls(
        store,
        make_call("acme", MID, FINISHED, outcome="success", answered=1, ended=2),
        make_call("beta", MID, FINISHED, outcome="timeout", answered=1, ended=2),
        make_call("beta", MID),
        make_call("idle", NOV_END + timedelta(days=3)),  # a call, but not in November
    )
    rows = await by_tenant(store)
    assert [(r.tenant_id, r.calls, r.verified, r.billable) for r in rows] == [
        ("acme", 1, 1, 1), ("beta", 2, 0, 1)]
    assert [r.tenant_id for r in await by_tenant(store, tenant_id="beta")] == ["beta"]
    assert await by_tenant(store, tenant_id="idle") == []
    assert {r.tenant_id for r in await settlement(store, "beta")} == {"beta"}


# -- daily rates ---------------------------------------------------------------------------------

async def test_daily_rates_cover_every_day_with_utc_buckets(store: Store) -> None:
    await add_tenants(store, "acme", "beta")
    day2 = datetime(2026, 11, 2, tzinfo=UTC)
    await add_calls(
        store,
        make_call("acme", day2 + timedelta(hours=1), FINISHED, outcome="success", answered=1,
                  ended=9),
        make_call("acme", day2 + timedelta(hours=23, minutes=59, seconds=59.5), FAILED,
                  outcome="no_answer"),
        # 2026-11-03 08:00 in Seoul is still 2 November in UTC
        make_call("acme", datetime(2026, 11, 2, 23, 0, tzinfo=UTC), FINISHED, outcome="failed",
                  answered=2, ended=30),
        make_call("acme", datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)),
        make_call("beta", day2 + timedelta(hours=5), FINISHED, outcome="success", answered=1,
                  ended=3),
        make_call("acme", NOV_END),
    )
    async with store.session() as s:
        if store.is_postgresql:  # the session's zone must not move calls between days
            await s.execute(text("SET TIME ZONE 'Asia/Seoul'"))
        days = await usage.daily_rates(s, NOV_START, NOV_END, "acme")
        all_tenants = await usage.daily_rates(s, NOV_START, NOV_END, None)
    assert [d.day for d in days] == [date(2026, 11, d) for d in range(1, 31)]
    by_day = {d.day.day: d for d in days}
    assert (by_day[2].calls, by_day[2].answered, by_day[2].verified) == (3, 2, 1)
    assert by_day[2].answer_rate == pytest.approx(2 / 3)
    assert by_day[2].success_rate == pytest.approx(1 / 3)
    assert (by_day[30].calls, by_day[30].answer_rate, by_day[30].success_rate) == (1, 0.0, 0.0)
    assert by_day[1].calls == 0 and by_day[1].answer_rate is None
    assert by_day[1].success_rate is None
    assert {d.day.day: d.calls for d in all_tenants if d.calls} == {2: 4, 30: 1}


# -- settlement rows and CSV -----------------------------------------------------------------------

REFERENCES = ['=HYPERLINK("http://evil.example","x")', "+82-10", "-1", "@cmd",
              'order "7", 포함, 쉼표', "줄\n바꿈", None]


async def test_csv_round_trip_equals_the_database_rows(store: Store) -> None:
    await add_tenants(store, "acme")
    calls = [make_call("acme", MID + timedelta(minutes=i), FINISHED if i % 2 else FAILED,
                       outcome="success" if i % 2 else "engine_restart", answered=1.5,
                       ended=62.25, reference=ref, attempts=i + 1,
                       call_id=f"call_{i:02d}")
             for i, ref in enumerate(REFERENCES)]
    calls.append(make_call("acme", MID + timedelta(hours=2), FAILED, outcome="busy",
                           call_id="call_unanswered", ended=4))
    await add_calls(store, *calls)
    rows = await settlement(store)
    content = usage.settlement_csv_header() + "".join(usage.settlement_csv_line(r) for r in rows)
    assert "\r\n" in content and content.endswith("\r\n")
    parsed = list(csv.reader(io.StringIO(content, newline="")))
    assert parsed[0] == list(usage.SETTLEMENT_FIELDS)
    records = [dict(zip(parsed[0], line, strict=True)) for line in parsed[1:]]
    assert [r["call_id"] for r in records] == [c.id for c in calls]
    for record, call in zip(records, calls, strict=True):
        assert record == expected_record(call)


def z(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expected_record(call: Call) -> dict[str, Any]:
    reference = call.reference or ""
    if reference[:1] in ("=", "+", "-", "@"):
        reference = "'" + reference
    answered = call.answered_at is not None and call.ended_at is not None
    assert call.ended_at is not None
    return {
        "call_id": call.id, "tenant_id": call.tenant_id, "reference": reference,
        "scenario": call.scenario, "destination": "'+82 10-****-5678",
        "created_at": z(call.created_at), "answered_at": z(call.answered_at),
        "ended_at": z(call.ended_at),
        "duration_seconds": str(math.ceil((call.ended_at - call.answered_at).total_seconds()))
        if answered and call.answered_at is not None else "0",
        "state": call.state, "outcome": call.outcome or "", "attempts": str(call.attempts),
        "billable": "1" if call.state == FINISHED else "0",
        "verified": "1" if call.state == FINISHED and call.outcome == "success" else "0",
    }


async def test_csv_never_shows_the_full_number(store: Store) -> None:
    await add_tenants(store, "acme")
    await add_calls(store, make_call("acme", MID, destination="+821098765432"))
    (row,) = await settlement(store)
    line = usage.settlement_csv_line(row)
    assert "98765432" not in line and "+82 10-****-5432" in line
    assert row.duration_seconds == 0 and row.billable == 0 and row.verified == 0


async def test_csv_times_are_iso_utc_with_z(store: Store) -> None:
    await add_tenants(store, "acme")
    await add_calls(store, make_call("acme", datetime(2026, 11, 30, 23, 59, 59, 999000,
                                                      tzinfo=UTC), FINISHED,
                                     outcome="success", answered=0.5, ended=10))
    (row,) = await settlement(store)
    fields = next(csv.reader([usage.settlement_csv_line(row)]))
    assert fields[5] == "2026-11-30T23:59:59.999Z"
    assert fields[6] == "2026-12-01T00:00:00.499Z"
    assert fields[8] == "10"  # 9.5 s: every started second counts


@pytest.mark.parametrize("batch", [1000, 7])
async def test_keyset_pagination_gives_every_row_once_in_order(store: Store,
                                                               batch: int) -> None:
    await add_tenants(store, "acme", "beta")
    rows: list[dict[str, Any]] = []
    for i in range(1013):
        created = MID + timedelta(milliseconds=i // 10)  # ten calls share each instant
        rows.append({
            "id": f"call_{(i * 7919) % 1013:05d}", "tenant_id": "acme" if i % 3 else "beta",
            "scenario": "type_a", "scenario_sha256": "0" * 64, "destination": DESTINATION,
            "params": {}, "retry_policy": {}, "state": FINISHED, "outcome": "success",
            "attempts": 1, "not_before": created, "created_at": created, "updated_at": created,
            "next_event_seq": 1, "cancel_requested": False})
    async with store.session() as s, s.begin():
        await s.execute(insert(Call), rows)
    got = await settlement(store, batch=batch)
    assert len(got) == 1013
    assert len({r.call_id for r in got}) == 1013
    keys = [(r.created_at, r.call_id) for r in got]
    assert keys == sorted(keys)
    beta = await settlement(store, "beta", batch=batch)
    assert len(beta) == len([r for r in rows if r["tenant_id"] == "beta"])
    (acme,) = await by_tenant(store, tenant_id="acme")
    assert acme.calls == acme.billable == acme.verified == 1013 - len(beta)


async def test_batch_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="batch"):
        await settlement(store, batch=0)
