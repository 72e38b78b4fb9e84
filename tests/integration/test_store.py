"""The store's reads and writes (ars_engine.store.repo) on SQLite and on a real PostgreSQL.

Every test gets a fresh migrated database (the ``store`` fixture, once per database kind) and
works with fixed times, one session per unit of work, as the engine does.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from ars_engine.errors import FieldError
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import (
    ANSWERED,
    CANCELED,
    DEAD,
    DELIVERED,
    DIALING,
    FAILED,
    FINISHED,
    QUEUED,
    RINGING,
    STATES,
    TRANSITIONS,
    ApiKey,
    Call,
    IdempotencyRecord,
    Tenant,
    WebhookEvent,
)
from ars_engine.store.repo import InvalidTransition

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
PEPPER = b"pepper-for-tests-only-32-bytes!!"
DESTINATION = "+821012345678"
CALLBACK = "https://verify.example.kr/hooks/ars"


def at(seconds: float) -> datetime:
    """T0 + ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def new_call(tenant_id: str = "acme", *, created: datetime = T0, not_before: datetime | None = None,
             scenario: str = "type_a", destination: str = DESTINATION,
             callback_url: str | None = None, call_id: str | None = None) -> Call:
    """A call as the API builds it (add_call queues it)."""
    return Call(id=call_id or repo.new_id("call"), tenant_id=tenant_id, scenario=scenario,
                scenario_sha256="0" * 64, destination=destination, params={"name": "홍길동"},
                retry_policy={}, attempts=0, not_before=not_before or created,
                created_at=created, updated_at=created, callback_url=callback_url,
                next_event_seq=1)


async def add_tenant(store: Store, tenant_id: str = "acme", *, disabled: bool = False) -> None:
    async with store.session() as s, s.begin():
        s.add(Tenant(id=tenant_id, name=f"{tenant_id} 주식회사", created_at=T0,
                     disabled=disabled))


async def add_calls(store: Store, *calls: Call, now: datetime = T0) -> list[str]:
    async with store.session() as s, s.begin():
        for call in calls:
            repo.add_call(s, call, call.created_at or now)
    return [call.id for call in calls]


async def advance(store: Store, call_id: str, *states: str, now: datetime,
                  **fields: object) -> None:
    """Move a call through ``states`` (one transaction) and set ``fields`` on it."""
    async with store.session() as s, s.begin():
        call = await repo.get_call(s, None, call_id, lock=True)
        assert call is not None
        for state in states:
            repo.transition(s, call, state, now)
        for name, value in fields.items():
            setattr(call, name, value)


def ids(rows: Sequence[Call | WebhookEvent]) -> list[str]:
    return [row.id for row in rows]


# -- tenants and API keys --------------------------------------------------------------------------
async def new_key(store: Store, tenant_id: str = "acme") -> tuple[str, str]:
    """(key id, full key) of a new API key of the tenant."""
    async with store.session() as s, s.begin():
        row, key = await repo.create_api_key(s, tenant_id, PEPPER, now=T0, label="ci")
    return row.id, key


async def authenticate(store: Store, presented: str) -> Tenant | None:
    async with store.session() as s, s.begin():
        return await repo.authenticate(s, presented, PEPPER)


async def test_authenticate_returns_the_tenant_of_a_valid_key(store: Store) -> None:
    await add_tenant(store, "acme")
    await add_tenant(store, "other")
    key_id, key = await new_key(store, "acme")
    await new_key(store, "other")

    tenant = await authenticate(store, key)

    assert tenant is not None and tenant.id == "acme" and tenant.name == "acme 주식회사"
    assert key.startswith(f"ars_{key_id}_")
    async with store.session() as s:
        row = await s.get(ApiKey, key_id)
    assert row is not None and row.label == "ci" and row.created_at == T0
    assert key.split("_", 2)[2] not in row.key_hash  # only the keyed hash is stored


async def test_authenticate_rejects_a_wrong_secret_or_an_unknown_id(store: Store) -> None:
    await add_tenant(store)
    key_id, key = await new_key(store)
    secret = key.split("_", 2)[2]

    assert await authenticate(store, f"ars_{key_id}_{secret[:-1]}x") is None
    assert await authenticate(store, f"ars_{key_id}_{secret}x") is None
    assert await authenticate(store, f"ars_000000000000_{secret}") is None
    assert await authenticate(store, key) is not None  # the right one still works


async def test_authenticate_rejects_a_revoked_key(store: Store) -> None:
    await add_tenant(store)
    key_id, key = await new_key(store)
    async with store.session() as s, s.begin():
        row = await s.get(ApiKey, key_id)
        assert row is not None
        row.revoked_at = at(60)

    assert await authenticate(store, key) is None


async def test_authenticate_rejects_the_key_of_a_disabled_tenant(store: Store) -> None:
    await add_tenant(store, "acme", disabled=True)
    _, key = await new_key(store, "acme")

    assert await authenticate(store, key) is None


async def test_authenticate_returns_none_for_malformed_keys(store: Store) -> None:
    """Whatever a client sends (aiohttp hands invalid UTF-8 over as surrogates) is None, never
    an exception: the API answers 401, not 500."""
    await add_tenant(store)
    key_id, key = await new_key(store)
    secret = key.split("_", 2)[2]
    malformed = ["", "ars", "ars_", "ars__", "ars___", f"ars_{key_id}", f"ars_{key_id}_",
                 f"ars__{secret}", f"xyz_{key_id}_{secret}", f"ARS_{key_id}_{secret}",
                 f" {key}", f"{key}\n", f"Bearer {key}", f"ars_{key_id}_{secret}" + "a" * 200,
                 "ars_" + "f" * 100 + "_" + secret, f"ars_{key_id}_{'키' * 10}",
                 f"ars_\x00_{secret}", f"ars_{key_id}_\x00", f"ars_{key_id}\x00_{secret}",
                 f"ars_\udcff_{secret}", f"ars_{key_id}_\udcff"]
    outcomes: dict[str, object] = {}
    for presented in malformed:
        try:
            outcomes[presented] = await authenticate(store, presented)
        except Exception as exc:  # collected so that one failure does not hide the others
            outcomes[presented] = repr(exc)
    assert outcomes == dict.fromkeys(malformed)


# -- calls and their transitions -------------------------------------------------------------------
async def test_transitions_are_recorded_with_their_times(store: Store) -> None:
    await add_tenant(store)
    [call_id] = await add_calls(store, new_call(created=T0))
    dial_1 = at(1.25)
    # queued → dialing (busy) → queued → dialing → ringing → answered → finished
    moves = [(DIALING, dial_1, "dispatched"), (QUEUED, at(3.5), "busy"),
             (DIALING, at(63), "retry"), (RINGING, at(64.000001), None),
             (ANSWERED, at(70), None), (FINISHED, at(95), "scenario finished")]
    for to_state, now, reason in moves:
        async with store.session() as s, s.begin():
            call = await repo.get_call(s, "acme", call_id, lock=True)
            assert call is not None
            if to_state == DIALING:
                call.attempts += 1
            repo.transition(s, call, to_state, now, reason=reason, node="node-a")

    async with store.session() as s:
        call = await repo.get_call(s, "acme", call_id, transitions=True)
    assert call is not None
    assert call.state == FINISHED and call.is_terminal and call.updated_at == at(95)
    assert [(t.from_state, t.to_state, t.at, t.attempt, t.reason) for t in call.transitions] == [
        (None, QUEUED, T0, 0, "created"),
        (QUEUED, DIALING, dial_1, 1, "dispatched"),
        (DIALING, QUEUED, at(3.5), 1, "busy"),
        (QUEUED, DIALING, at(63), 2, "retry"),
        (DIALING, RINGING, at(64.000001), 2, None),
        (RINGING, ANSWERED, at(70), 2, None),
        (ANSWERED, FINISHED, at(95), 2, "scenario finished"),
    ]
    assert all(t.at.tzinfo is UTC for t in call.transitions)
    assert [t.node for t in call.transitions[1:]] == ["node-a"] * 6


async def test_forbidden_transitions_raise_and_record_nothing(store: Store) -> None:
    await add_tenant(store)
    [call_id] = await add_calls(store, new_call())
    await advance(store, call_id, DIALING, RINGING, ANSWERED, FINISHED, now=at(10))

    for to_state in STATES:
        with pytest.raises(InvalidTransition, match="is not allowed"):
            async with store.session() as s, s.begin():
                call = await repo.get_call(s, "acme", call_id, lock=True)
                assert call is not None
                repo.transition(s, call, to_state, at(20))

    async with store.session() as s:
        call = await repo.get_call(s, "acme", call_id, transitions=True)
    assert call is not None and call.state == FINISHED
    assert [t.to_state for t in call.transitions] == [QUEUED, DIALING, RINGING, ANSWERED,
                                                      FINISHED]


async def test_only_the_moves_of_the_state_table_are_allowed(store: Store) -> None:
    forbidden = [(a, b) for a in STATES for b in STATES if b not in TRANSITIONS[a]]
    assert (QUEUED, ANSWERED) in forbidden and (ANSWERED, QUEUED) in forbidden
    async with store.session() as s:
        for from_state, to_state in forbidden:
            call = new_call()
            call.state = from_state
            with pytest.raises(InvalidTransition):
                repo.transition(s, call, to_state, T0)
            assert call.state == from_state
        assert not s.new  # nothing was added for a refused move


async def test_a_call_transitioned_in_the_transaction_that_adds_it(store: Store) -> None:
    """add_call then transition before any flush (a call refused at dispatch)."""
    await add_tenant(store)
    call = new_call()
    async with store.session() as s, s.begin():
        repo.add_call(s, call, T0)
        repo.transition(s, call, FAILED, T0, reason="scenario gone")

    async with store.session() as s:
        loaded = await repo.get_call(s, "acme", call.id, transitions=True)
    assert loaded is not None and loaded.state == FAILED
    assert [(t.from_state, t.to_state) for t in loaded.transitions] == [(None, QUEUED),
                                                                        (QUEUED, FAILED)]


async def test_get_call_is_scoped_to_the_tenant(store: Store) -> None:
    await add_tenant(store, "acme")
    await add_tenant(store, "other")
    [call_id] = await add_calls(store, new_call("acme"))

    async with store.session() as s:
        assert await repo.get_call(s, "other", call_id) is None
        assert await repo.get_call(s, "acme", call_id) is not None
        assert await repo.get_call(s, None, call_id) is not None


# -- listing ---------------------------------------------------------------------------------------
async def add_listing_calls(store: Store) -> list[Call]:
    """25 calls of acme, three per second (ties broken by id), some on scenario type_b, some to
    another number, and one call of another tenant."""
    await add_tenant(store, "acme")
    await add_tenant(store, "other")
    calls = [new_call("acme", created=at(i // 3), scenario="type_b" if i % 4 == 0 else "type_a",
                      destination="+821099998888" if i % 5 == 0 else DESTINATION)
             for i in range(25)]
    await add_calls(store, *calls, new_call("other", created=at(5)))
    return calls


def newest_first(calls: Sequence[Call]) -> list[str]:
    return [c.id for c in sorted(calls, key=lambda c: (c.created_at, c.id), reverse=True)]


async def test_list_calls_pages_through_every_call_once_newest_first(store: Store) -> None:
    calls = await add_listing_calls(store)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        async with store.session() as s:
            rows, cursor = await repo.list_calls(s, "acme", limit=10, cursor=cursor)
        pages.append(ids(rows))
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not end"

    assert [len(page) for page in pages] == [10, 10, 5]
    listed = [call_id for page in pages for call_id in page]
    assert listed == newest_first(calls)
    assert len(set(listed)) == 25


async def test_list_calls_cursor_is_stable_while_new_calls_arrive(store: Store) -> None:
    calls = await add_listing_calls(store)
    async with store.session() as s:
        first, cursor = await repo.list_calls(s, "acme", limit=10)
    await add_calls(store, new_call("acme", created=at(100)))  # newer: belongs before page 1

    async with store.session() as s:
        second, _ = await repo.list_calls(s, "acme", limit=10, cursor=cursor)
    assert ids(first) + ids(second) == newest_first(calls)[:20]


async def test_list_calls_filters(store: Store) -> None:
    calls = await add_listing_calls(store)
    await advance(store, calls[0].id, DIALING, now=at(30))
    await advance(store, calls[1].id, DIALING, RINGING, ANSWERED, now=at(30), outcome="ok")
    await advance(store, calls[2].id, FAILED, now=at(30), outcome="refused")

    async def listed(**filters: object) -> list[str]:
        async with store.session() as s:
            rows, cursor = await repo.list_calls(s, "acme", limit=100, **filters)  # type: ignore[arg-type]
        assert cursor is None
        return ids(rows)

    assert await listed(states=[DIALING, ANSWERED]) == newest_first(calls[:2])
    assert await listed(states=[QUEUED]) == newest_first(calls[3:])
    assert await listed(scenario="type_b") == newest_first(
        [c for c in calls if c.scenario == "type_b"])
    assert await listed(destination="+821099998888") == newest_first(
        [c for c in calls if c.destination == "+821099998888"])
    assert await listed(outcome="refused") == [calls[2].id]
    assert await listed(created_from=at(2), created_to=at(4)) == newest_first(calls[6:12])
    assert await listed(scenario="type_b", destination="+821099998888") == newest_first(
        [calls[0], calls[20]])
    assert await listed(scenario="nope") == []


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not-a-cursor!", "%%%", "QQ", b64(b"no separator"), b64(b"yesterday|call_x"),
    b64(b"\xff\xfe|call_x"),
    b64(b"2026-11-25T12:00:00|call_x"),  # well formed, but naive: not one we hand out
    b64(b"2026-11-25T12:00:00+00:00|call_\x00"),  # PostgreSQL refuses NUL in text
], ids=["text", "symbols", "short", "no-separator", "bad-date", "bad-utf8", "naive-date",
        "nul-in-id"])
async def test_list_calls_rejects_a_garbage_cursor(store: Store, cursor: str) -> None:
    await add_tenant(store)
    async with store.session() as s:
        with pytest.raises(FieldError) as raised:
            await repo.list_calls(s, "acme", cursor=cursor)
    assert raised.value.field == "cursor" and raised.value.code == "invalid_cursor"


async def test_count_calls_to_and_active_counts(store: Store) -> None:
    await add_tenant(store, "acme")
    await add_tenant(store, "other")
    _old, new, elsewhere, other = await add_calls(
        store, new_call("acme", created=at(-7200)), new_call("acme", created=at(0)),
        new_call("acme", destination="+821099998888"), new_call("other"))
    await advance(store, new, DIALING, now=at(1))
    await advance(store, other, DIALING, RINGING, now=at(1))
    await advance(store, elsewhere, DIALING, RINGING, ANSWERED, FINISHED, now=at(1))

    async with store.session() as s:
        assert await repo.count_calls_to(s, "acme", DESTINATION, at(-3600)) == 1
        assert await repo.count_calls_to(s, "acme", DESTINATION, at(-7200)) == 2
        assert await repo.count_calls_to(s, "other", "+821099998888", at(-7200)) == 0
        assert await repo.active_counts(s, ["acme", "other", "nobody"]) == {"acme": 1,
                                                                             "other": 1}
        assert await repo.active_destinations(s, [DESTINATION, "+821099998888"]) == {
            DESTINATION}
    async with store.session() as s, s.begin():
        locked = await repo.lock_tenants(s, ["other", "acme", "other"])
    assert sorted(locked) == ["acme", "other"]


# -- dispatch: due calls, leases -------------------------------------------------------------------
async def test_due_calls_are_the_queued_calls_whose_time_has_come(store: Store) -> None:
    await add_tenant(store)
    past, now, future, dialing, canceled = await add_calls(
        store, new_call(created=at(-120), not_before=at(-60)),
        new_call(created=at(-300), not_before=T0),
        new_call(created=at(-300), not_before=at(0.001)),
        new_call(created=at(-300), not_before=at(-300)),
        new_call(created=at(-300), not_before=at(-300)))
    await advance(store, dialing, DIALING, now=at(-200))
    await advance(store, canceled, CANCELED, now=at(-200))

    async with store.session() as s, s.begin():
        due = await repo.due_calls(s, T0, 10, skip_locked=store.is_postgresql)
        assert ids(due) == [past, now]
        assert ids(await repo.due_calls(s, T0, 1, skip_locked=store.is_postgresql)) == [past]
        assert ids(await repo.due_calls(s, at(1), 10, skip_locked=store.is_postgresql)) == [
            past, now, future]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_nodes_taking_due_calls_get_disjoint_rows(store: Store) -> None:
    """FOR UPDATE SKIP LOCKED: a node inside its transaction holds the rows it took; the other
    node, at the same moment, takes the rest and never waits."""
    await add_tenant(store)
    call_ids = await add_calls(store, *(new_call(not_before=at(-i)) for i in range(5)))
    both_took = asyncio.Barrier(2)

    async def node(limit: int) -> list[str]:
        async with store.session() as s, s.begin():
            taken = ids(await repo.due_calls(s, T0, limit, skip_locked=True))
            async with asyncio.timeout(10):
                await both_took.wait()  # keep the rows locked until the other node took its
        return taken

    first, second = await asyncio.gather(node(3), node(3))

    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(call_ids)
    assert sorted([len(first), len(second)]) == [2, 3]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_node_skips_the_due_calls_another_node_holds(store: Store) -> None:
    await add_tenant(store)
    oldest, middle, newest = await add_calls(
        store, *(new_call(not_before=at(-i)) for i in (30, 20, 10)))

    async with store.session() as a, a.begin():
        assert ids(await repo.due_calls(a, T0, 2, skip_locked=True)) == [oldest, middle]
        async with store.session() as b, b.begin():
            assert ids(await repo.due_calls(b, T0, 10, skip_locked=True)) == [newest]
    async with store.session() as b, b.begin():  # a ended: its rows are free again
        assert ids(await repo.due_calls(b, T0, 10, skip_locked=True)) == [oldest, middle, newest]


async def test_renew_leases_extends_only_this_nodes_running_calls(store: Store) -> None:
    await add_tenant(store)
    mine_dialing, mine_answered, theirs, mine_finished, queued = await add_calls(
        store, *(new_call() for _ in range(5)))
    lease = {"lease_expires_at": at(30)}
    await advance(store, mine_dialing, DIALING, now=T0, lease_owner="node-a", **lease)
    await advance(store, mine_answered, DIALING, ANSWERED, now=T0, lease_owner="node-a", **lease)
    await advance(store, theirs, DIALING, RINGING, now=T0, lease_owner="node-b", **lease)
    await advance(store, mine_finished, DIALING, ANSWERED, FINISHED, now=T0,
                  lease_owner="node-a", **lease)

    async with store.session() as s, s.begin():
        assert await repo.renew_leases(s, "node-a", [], at(90)) == 0
        renewed = await repo.renew_leases(
            s, "node-a", [mine_dialing, mine_answered, theirs, mine_finished, queued], at(90))
    assert renewed == 2

    async with store.session() as s:
        leases = {c.id: c.lease_expires_at for c in (await s.scalars(select(Call))).all()}
    assert leases == {mine_dialing: at(90), mine_answered: at(90), theirs: at(30),
                      mine_finished: at(30), queued: None}

    async with store.session() as s, s.begin():
        skip = store.is_postgresql
        assert ids(await repo.expired_calls(s, at(30), 10, skip_locked=skip)) == []
        assert ids(await repo.expired_calls(s, at(60), 10, skip_locked=skip)) == [theirs]
        expired = ids(await repo.expired_calls(s, at(120), 10, skip_locked=skip))
        assert expired[0] == theirs and set(expired) == {theirs, mine_dialing, mine_answered}
        assert ids(await repo.expired_calls(s, at(120), 1, skip_locked=skip)) == [theirs]


# -- idempotency -----------------------------------------------------------------------------------
async def test_idempotency_record_is_returned_until_it_expires(store: Store) -> None:
    await add_tenant(store, "acme")
    await add_tenant(store, "other")
    body = {"scenario": "type_a", "to": DESTINATION, "params": {"code": "123456"}}
    fingerprint = repo.request_fingerprint(b"idempotency-key", body)
    assert fingerprint == repo.request_fingerprint(b"idempotency-key", dict(reversed(
        body.items())))
    assert "123456" not in fingerprint
    response = {"id": "call_1", "state": "queued", "message": "접수됨"}
    async with store.session() as s, s.begin():
        s.add(IdempotencyRecord(tenant_id="acme", key="order-42", request_hash=fingerprint,
                                call_id="call_1", status=201, response=response,
                                created_at=T0, expires_at=at(86400)))

    async with store.session() as s, s.begin():
        record = await repo.get_idempotency(s, "acme", "order-42", at(86399))
        assert record is not None
        assert (record.request_hash, record.call_id, record.status, record.response) == (
            fingerprint, "call_1", 201, response)
        assert record.expires_at == at(86400)
        assert await repo.get_idempotency(s, "other", "order-42", at(1)) is None
        assert await repo.get_idempotency(s, "acme", "order-43", at(1)) is None

    async with store.session() as s, s.begin():
        assert await repo.get_idempotency(s, "acme", "order-42", at(86400)) is None
    async with store.session() as s:
        assert await s.get(IdempotencyRecord, ("acme", "order-42")) is None  # deleted



async def test_a_second_record_for_the_same_key_is_an_integrity_error(store: Store) -> None:
    """Two requests with one Idempotency-Key race: the loser's commit must raise IntegrityError,
    which the caller resolves by replaying the winner's response (service/calls.py), not
    StoreError ("database unavailable", a 503)."""
    await add_tenant(store)

    def record(call_id: str) -> IdempotencyRecord:
        return IdempotencyRecord(tenant_id="acme", key="order-42", request_hash="0" * 64,
                                 call_id=call_id, status=201, response={"id": call_id},
                                 created_at=T0, expires_at=at(86400))

    async with store.session() as s, s.begin():
        s.add(record("call_winner"))
    with pytest.raises(IntegrityError):
        async with store.session() as s, s.begin():
            s.add(record("call_loser"))
    async with store.session() as s:
        kept = await s.get(IdempotencyRecord, ("acme", "order-42"))
    assert kept is not None and kept.call_id == "call_winner"

# -- webhook outbox --------------------------------------------------------------------------------
async def add_events(store: Store, call_id: str, *types: str, now: datetime) -> list[WebhookEvent]:
    async with store.session() as s, s.begin():
        call = await repo.get_call(s, None, call_id, lock=True)
        assert call is not None
        events = [repo.add_event(s, call, kind, {"id": call_id, "state": call.state}, now)
                  for kind in types]
    assert all(event is not None for event in events)
    return [event for event in events if event is not None]


async def set_event(store: Store, event_id: str, **fields: object) -> None:
    async with store.session() as s, s.begin():
        event = await s.get(WebhookEvent, event_id)
        assert event is not None
        for name, value in fields.items():
            setattr(event, name, value)


async def due_event_ids(store: Store, now: datetime) -> list[str]:
    async with store.session() as s, s.begin():
        return ids(await repo.due_events(s, now, 100, skip_locked=store.is_postgresql))


async def test_add_event_numbers_each_calls_events_from_one(store: Store) -> None:
    await add_tenant(store)
    first, second, silent = await add_calls(
        store, new_call(callback_url=CALLBACK), new_call(callback_url=CALLBACK), new_call())
    a = await add_events(store, first, "call.queued", "call.dialing", now=at(1))
    b = await add_events(store, second, "call.queued", now=at(2))
    a += await add_events(store, first, "call.finished", now=at(3))

    assert [e.seq for e in a] == [1, 2, 3] and [e.seq for e in b] == [1]
    body = json.loads(a[2].body)
    assert body == {"id": a[2].id, "type": "call.finished", "created_at": "2026-11-25T12:00:03Z",
                    "sequence": 3, "call": {"id": first, "state": QUEUED}}
    async with store.session() as s, s.begin():
        call = await repo.get_call(s, None, first)
        quiet = await repo.get_call(s, None, silent)
        assert call is not None and call.next_event_seq == 4
        assert quiet is not None and repo.add_event(s, quiet, "call.queued", {}, T0) is None
        events = await repo.list_events(s, "acme", call_id=first)
        assert [(e.seq, e.status, e.url, e.tenant_id) for e in events] == [
            (3, "pending", CALLBACK, "acme"), (2, "pending", CALLBACK, "acme"),
            (1, "pending", CALLBACK, "acme")]
        assert await s.scalar(select(func.count()).select_from(WebhookEvent)) == 4


async def test_add_event_in_the_transaction_that_adds_the_call(store: Store) -> None:
    """A call built without next_event_seq (the column default) gets its first event as 1."""
    await add_tenant(store)
    call = Call(id=repo.new_id("call"), tenant_id="acme", scenario="type_a",
                scenario_sha256="0" * 64, destination=DESTINATION, not_before=T0,
                created_at=T0, updated_at=T0, callback_url=CALLBACK)
    async with store.session() as s, s.begin():
        repo.add_call(s, call, T0)
        event = repo.add_event(s, call, "call.queued", {"id": call.id}, T0)
        assert event is not None

    assert event.seq == 1
    async with store.session() as s:
        loaded = await repo.get_call(s, None, call.id)
    assert loaded is not None and loaded.next_event_seq == 2 and loaded.attempts == 0


async def test_due_events_are_the_first_pending_event_of_each_call(store: Store) -> None:
    await add_tenant(store)
    first, second = await add_calls(store, new_call(callback_url=CALLBACK),
                                    new_call(callback_url=CALLBACK))
    a1, a2, a3 = await add_events(store, first, "call.queued", "call.answered", "call.finished",
                                  now=at(1))
    b1, b2 = await add_events(store, second, "call.queued", "call.failed", now=at(2))

    assert await due_event_ids(store, T0) == []  # not yet time
    assert await due_event_ids(store, at(10)) == [a1.id, b1.id]

    await set_event(store, a1.id, status=DELIVERED, delivered_at=at(11), attempts=1)
    assert await due_event_ids(store, at(12)) == [a2.id, b1.id]

    # a2 failed once and waits for its retry: a3 waits behind it
    await set_event(store, a2.id, attempts=1, next_attempt_at=at(100), last_status=503)
    assert await due_event_ids(store, at(12)) == [b1.id]
    assert await due_event_ids(store, at(100)) == [b1.id, a2.id]

    # a dead event no longer holds back the next one
    await set_event(store, a2.id, status=DEAD, last_error="gave up")
    assert await due_event_ids(store, at(12)) == [a3.id, b1.id]

    await set_event(store, b1.id, status=DELIVERED, delivered_at=at(13), attempts=1)
    assert await due_event_ids(store, at(14)) == [a3.id, b2.id]


async def test_due_events_skips_events_leased_by_a_live_node(store: Store) -> None:
    await add_tenant(store)
    first, second = await add_calls(store, new_call(callback_url=CALLBACK),
                                    new_call(callback_url=CALLBACK))
    [a1] = await add_events(store, first, "call.queued", now=at(1))
    b1, _b2 = await add_events(store, second, "call.queued", "call.finished", now=at(2))

    await set_event(store, b1.id, lease_owner="node-b", lease_expires_at=at(60))
    assert await due_event_ids(store, at(10)) == [a1.id]  # b2 waits behind the leased b1
    assert await due_event_ids(store, at(60)) == [a1.id]  # live up to its expiry instant
    assert await due_event_ids(store, at(60.5)) == [a1.id, b1.id]  # node-b died: lease expired


# -- the UtcDateTime column ------------------------------------------------------------------------
async def test_aware_datetime_round_trips_to_the_same_instant_in_utc(store: Store) -> None:
    seoul = timezone(timedelta(hours=9))
    local = datetime(2026, 11, 25, 21, 0, 0, 123456, tzinfo=seoul)
    async with store.session() as s, s.begin():
        s.add(Tenant(id="acme", name="acme", created_at=local))

    async with store.session() as s:
        tenant = await s.get(Tenant, "acme")
        assert tenant is not None
        assert tenant.created_at == local
        assert tenant.created_at.utcoffset() == timedelta(0)
        assert tenant.created_at == datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
        # the database compares the same instant
        found = await s.scalar(select(Tenant.id).where(Tenant.created_at == local))
        earlier = await s.scalar(select(Tenant.id).where(
            Tenant.created_at < local - timedelta(microseconds=1)))
        assert (found, earlier) == ("acme", None)
        raw = (await s.execute(text("SELECT created_at FROM tenants"))).scalar_one()
    if store.is_postgresql:
        assert raw == datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    else:
        assert raw == "2026-11-25 12:00:00.123456"  # naive UTC


async def test_naive_datetime_is_rejected(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime") as raised:
        async with store.session() as s, s.begin():
            s.add(Tenant(id="acme", name="acme", created_at=datetime(2026, 11, 25, 12)))
    assert isinstance(raised.value.orig, ValueError)
    async with store.session() as s:
        assert await s.get(Tenant, "acme") is None
        with pytest.raises(StatementError, match="naive datetime"):
            await s.scalar(select(Tenant).where(Tenant.created_at < datetime(2026, 11, 25)))

