"""The HTTP API end to end on a real server (aiohttp TestServer) and both databases (the ``store``
fixture runs each test on SQLite and on PostgreSQL). No dispatcher runs: calls stay queued unless
a test moves them in the database."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from ars_engine.api.app import AUTH_CACHE, create_app
from ars_engine.api.problems import PROBLEM_BASE
from ars_engine.config import Settings
from ars_engine.errors import StoreError
from ars_engine.media.library import MediaLibrary
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.runtime import Services
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import DEAD, ApiKey, Call, IdempotencyRecord, Tenant, WebhookEvent
from tests.conftest import SCENARIOS

CODE = "735914"  # the planted secret: must never come back in clear
MOBILE = "010-2345-6789"
MOBILE_E164 = "+821023456789"


class Clock:
    """The services' clock: real time, moved forward by tests that need it."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Api:
    """A running API with three tenants: ``acme`` (every scenario), ``rival`` (another
    tenant), ``small`` (only type_a, two calls per number per hour)."""

    client: TestClient[Any, Any]
    services: Services
    clock: Clock
    keys: dict[str, str]
    texts: list[str] = field(default_factory=list)  # every response body seen (secret check)

    def auth(self, tenant: str = "acme") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    async def request(self, method: str, path: str, *, tenant: str | None = "acme",
                      headers: dict[str, str] | None = None, **kwargs: Any
                      ) -> tuple[ClientResponse, Any]:
        """Send; return the response and its parsed JSON (the text when it is not JSON)."""
        all_headers = {**(self.auth(tenant) if tenant else {}), **(headers or {})}
        response = await self.client.request(method, path, headers=all_headers, **kwargs)
        raw = await response.read()
        assert response.headers.get("X-Request-Id"), f"{method} {path}: no X-Request-Id"
        text = raw.decode("utf-8", "replace")
        self.texts.append(text)
        try:
            return response, json.loads(text)
        except ValueError:
            return response, text

    async def create(self, body: dict[str, Any] | None = None, *, tenant: str = "acme",
                     key: str | None = None) -> tuple[ClientResponse, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        return await self.request("POST", "/v1/calls", tenant=tenant, headers=headers,
                                  json=body if body is not None else type_c())

    async def set_call(self, call_id: str, **values: Any) -> None:
        async with self.services.store.session() as s, s.begin():
            await s.execute(update(Call).where(Call.id == call_id).values(**values))


def type_c(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"scenario": "type_c", "to": MOBILE, "params": {"code": CODE},
                            "reference": "order-1"}
    body.update(changes)
    return body


def assert_problem(response: ClientResponse, body: Any, status: int, code: str,
                   field: str | None = None) -> None:
    assert response.status == status, body
    assert response.content_type == "application/problem+json"
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == PROBLEM_BASE + code
    assert body["title"] and body["detail"]
    assert body["field"] == field


async def add_tenant(store: Store, pepper: bytes, tenant_id: str, **settings: Any) -> str:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"disabled": False, "allowed_scenarios": None, "max_concurrent": 10,
                              "per_number_limit": 1000, "per_number_window_s": 3600,
                              "destination_rules": {}}
    values.update(settings)
    async with store.session() as s, s.begin():
        s.add(Tenant(id=tenant_id, name=tenant_id.title(), created_at=now, **values))
        await s.flush()
        _, key = await repo.create_api_key(s, tenant_id, pepper, now=now, label="test")
    return key


@pytest.fixture
async def api(store: Store, tmp_path: Path, tone_media: MediaLibrary) -> AsyncIterator[Api]:
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    clock = Clock()
    services = Services.build(settings, store, ScenarioCatalog.load(SCENARIOS, tone_media),
                              clock=clock)
    pepper = services.keys.api_key_pepper
    keys = {"acme": await add_tenant(store, pepper, "acme"),
            "rival": await add_tenant(store, pepper, "rival"),
            "small": await add_tenant(store, pepper, "small", allowed_scenarios=["type_a"],
                                      per_number_limit=2)}
    async with TestClient(TestServer(create_app(services))) as client:
        yield Api(client, services, clock, keys)


# -- creating and reading calls --------------------------------------------------------------------

async def test_create_call_queues_it_and_masks_the_code(api: Api) -> None:
    response, body = await api.create()
    assert response.status == 201, body
    assert response.headers["Location"] == f"/v1/calls/{body['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert body["state"] == "queued"
    assert body["to"] == MOBILE_E164
    assert body["params"]["code"] == "*" * len(CODE)
    assert body["reference"] == "order-1"

    response, detail = await api.request("GET", f"/v1/calls/{body['id']}")
    assert response.status == 200
    assert detail["id"] == body["id"]
    assert [(t["from"], t["to"]) for t in detail["transitions"]] == [(None, "queued")]
    assert detail["timeline"] == [] and detail["webhooks"] == []


async def test_every_response_carries_a_request_id_and_echoes_a_plain_one(api: Api) -> None:
    response, _ = await api.request("GET", "/v1/scenarios", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response, _ = await api.request("GET", "/v1/scenarios",
                                    headers={"X-Request-Id": "no spaces <allowed>"})
    assert response.headers["X-Request-Id"].startswith("req_")
    response, _ = await api.request("GET", "/v1/nowhere", tenant=None)
    assert response.headers["X-Request-Id"].startswith("req_")


# -- authentication --------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer ars_0000_nope", "Bearer ",
                                           "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer garbage"])
async def test_a_missing_or_invalid_key_is_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in [("GET", "/v1/calls"), ("POST", "/v1/calls"), ("GET", "/v1/scenarios"),
                         ("GET", "/v1/calls/call_x/recording")]:
        response, body = await api.request(method, path, tenant=None, headers=headers)
        assert_problem(response, body, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_revoked_key_stops_working_once_the_cache_expires(api: Api) -> None:
    response, _ = await api.request("GET", "/v1/calls")
    assert response.status == 200
    async with api.services.store.session() as s, s.begin():
        await s.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))
    cache = api.client.app[AUTH_CACHE]
    assert cache.ttl <= 5
    now = cache.clock()
    cache.clock = lambda: now + cache.ttl  # the few seconds a verified key is remembered
    response, body = await api.request("GET", "/v1/calls")
    assert_problem(response, body, 401, "unauthorized")
    # a revoked key never seen before is refused at once
    response, body = await api.request("GET", "/v1/calls", tenant="rival")
    assert_problem(response, body, 401, "unauthorized")


async def test_a_disabled_tenant_is_401(api: Api) -> None:
    async with api.services.store.session() as s, s.begin():
        await s.execute(update(Tenant).where(Tenant.id == "rival").values(disabled=True))
    response, body = await api.request("GET", "/v1/calls", tenant="rival")
    assert_problem(response, body, 401, "unauthorized")


async def test_the_openapi_document_needs_no_key(api: Api) -> None:
    response, body = await api.request("GET", "/v1/openapi.json", tenant=None)
    assert response.status == 200
    assert body["openapi"].startswith("3.1")


# -- tenants are isolated --------------------------------------------------------------------------

async def test_another_tenants_call_is_not_found(api: Api, tmp_path: Path) -> None:
    _, call = await api.create()
    await write_recording(api, call["id"], tmp_path)
    for method, path in [("GET", f"/v1/calls/{call['id']}"),
                         ("POST", f"/v1/calls/{call['id']}/cancel"),
                         ("GET", f"/v1/calls/{call['id']}/recording"),
                         ("GET", f"/v1/calls/{call['id']}/recording?format=mp3"),
                         ("GET", f"/v1/calls/{call['id']}/evidence")]:
        response, body = await api.request(method, path, tenant="rival")
        assert_problem(response, body, 404, "not_found")
    _, page = await api.request("GET", "/v1/calls", tenant="rival")
    assert page == {"calls": [], "next_cursor": None}
    _, owner = await api.request("GET", f"/v1/calls/{call['id']}")
    assert owner["state"] == "queued"  # the rival's cancel did nothing


# -- request checks --------------------------------------------------------------------------------

@pytest.mark.parametrize(("tenant", "body", "field", "code"), [
    ("acme", type_c(scenario="no_such"), "scenario", "unknown_scenario"),
    ("small", type_c(), "scenario", "scenario_not_allowed"),
    ("acme", type_c(to="hello"), "to", "invalid_number"),
    ("acme", type_c(to="010-12"), "to", "not_a_korean_range"),
    ("acme", type_c(to="+1 212 555 0100"), "to", "international_not_allowed"),
    ("acme", type_c(params={}), "params.code", "invalid_parameter"),
    ("acme", type_c(params={"code": "12"}), "params.code", "invalid_parameter"),
    ("acme", type_c(params={"code": CODE, "colour": "red"}), "params.colour",
     "unknown_parameter"),
    ("acme", type_c(callback_url="ftp://core.example/hook"), "callback_url", "invalid_url"),
    ("acme", type_c(schedule_at="tomorrow"), "schedule_at", "invalid_datetime"),
    ("acme", type_c(schedule_at="2030-01-01T09:00:00"), "schedule_at", "missing_timezone"),
    ("acme", type_c(retry={"max_attempts": 9}), "retry.max_attempts", "out_of_range"),
    ("acme", type_c(retry={"retry_on": ["rejected"]}), "retry.retry_on[0]", "unknown_outcome"),
    ("acme", type_c(priority=1), "priority", "unknown_field"),
    ("acme", [1, 2], None, "invalid_body"),
])
async def test_a_bad_field_is_422_naming_it(api: Api, tenant: str, body: Any,
                                            field: str | None, code: str) -> None:
    response, problem = await api.request("POST", "/v1/calls", tenant=tenant, json=body)
    assert_problem(response, problem, 422, code, field)
    assert CODE not in json.dumps(problem)
    async with api.services.store.session() as s, s.begin():
        assert (await s.scalars(select(Call))).all() == []


@pytest.mark.parametrize("raw", ['{"scenario": "type_c", "params": {"code": "735914"',
                                 "", "{'single': 'quotes'}", '{"n": NaN}', b"\xff\xfe{}"])
async def test_a_body_that_is_not_json_is_400(api: Api, raw: str | bytes) -> None:
    response, problem = await api.request("POST", "/v1/calls", data=raw,
                                          headers={"Content-Type": "application/json"})
    assert_problem(response, problem, 400, "invalid_json")
    assert CODE not in problem["detail"]


async def test_bad_json_names_the_line_and_column(api: Api) -> None:
    response, problem = await api.request("POST", "/v1/calls", data='{\n  "to": ,\n}',
                                          headers={"Content-Type": "application/json"})
    assert_problem(response, problem, 400, "invalid_json")
    assert "line 2, column 9" in problem["detail"]


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    limit = api.services.settings.service.max_body_bytes
    body = json.dumps(type_c(reference="x" * limit))
    response, problem = await api.request("POST", "/v1/calls", data=body,
                                          headers={"Content-Type": "application/json"})
    assert_problem(response, problem, 413, "body_too_large")
    response, problem = await api.request("POST", "/v1/scenarios/validate", data="#" * (limit + 1),
                                          headers={"Content-Type": "text/yaml"})
    assert_problem(response, problem, 413, "body_too_large")


async def test_the_per_number_limit_is_429_with_retry_after(api: Api) -> None:
    body = {"scenario": "type_a", "to": MOBILE, "params": {"code": "1234"}}
    for _ in range(2):
        response, _ = await api.create(body, tenant="small")
        assert response.status == 201
    response, problem = await api.create(body, tenant="small")
    assert_problem(response, problem, 429, "number_rate_limited", "to")
    assert response.headers["Retry-After"] == "3600"
    response, _ = await api.create({**body, "to": "010-9999-8888"}, tenant="small")
    assert response.status == 201  # another number is fine


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    response, problem = await api.request("GET", "/v1/nowhere")
    assert_problem(response, problem, 404, "not_found")
    response, problem = await api.request("GET", "/nowhere", tenant=None)
    assert_problem(response, problem, 404, "not_found")
    response, problem = await api.request("DELETE", "/v1/calls")
    assert_problem(response, problem, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    response, problem = await api.request("GET", "/v1/calls/call_x/cancel")
    assert_problem(response, problem, 405, "method_not_allowed")


async def test_a_store_failure_is_503_and_a_bug_is_a_generic_500(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def store_down(*_: Any) -> Any:
        raise StoreError("database error: ConnectionRefusedError")

    async def bug(*_: Any) -> Any:
        raise RuntimeError(f"boom while handling {CODE}")

    monkeypatch.setattr(api.services.calls, "get", store_down)
    response, problem = await api.request("GET", "/v1/calls/call_x")
    assert_problem(response, problem, 503, "store_unavailable")
    assert response.headers["Retry-After"]

    monkeypatch.setattr(api.services.calls, "get", bug)
    with caplog.at_level(logging.ERROR, logger="ars_engine.api"):
        response, problem = await api.request("GET", "/v1/calls/call_x",
                                              headers={"X-Request-Id": "trace-500"})
    assert_problem(response, problem, 500, "internal_error")
    assert "boom" not in problem["detail"] and CODE not in problem["detail"]
    assert "trace-500" in problem["detail"]
    assert any("trace-500" in r.getMessage() for r in caplog.records)


# -- idempotency -----------------------------------------------------------------------------------

async def test_one_idempotency_key_from_100_concurrent_posts_makes_one_call(api: Api) -> None:
    responses = await asyncio.gather(*(api.create(key="order-42") for _ in range(100)))
    assert [r.status for r, _ in responses] == [201] * 100
    bodies = {json.dumps(body, sort_keys=True) for _, body in responses}
    assert len(bodies) == 1
    fresh = [r for r, _ in responses if "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r, _ in responses
               if r is not fresh[0])
    call_id = responses[0][1]["id"]
    assert {r.headers["Location"] for r, _ in responses} == {f"/v1/calls/{call_id}"}
    async with api.services.store.session() as s, s.begin():
        assert [c.id for c in (await s.scalars(select(Call))).all()] == [call_id]


async def test_an_idempotency_key_reused_with_another_body_is_422(api: Api) -> None:
    response, first = await api.create(key="order-7")
    assert response.status == 201
    response, problem = await api.create(type_c(reference="order-8"), key="order-7")
    assert_problem(response, problem, 422, "idempotency_key_reused", "Idempotency-Key")
    response, again = await api.create(key="order-7")
    assert response.status == 201 and again == first
    assert response.headers["Idempotent-Replayed"] == "true"
    # the same key is another tenant's own
    response, theirs = await api.create(key="order-7", tenant="rival")
    assert response.status == 201 and theirs["id"] != first["id"]


async def test_an_idempotency_key_expires_after_24_hours(api: Api) -> None:
    _, first = await api.create(key="order-9")
    api.clock.offset = timedelta(hours=24, seconds=1)
    response, second = await api.create(key="order-9")
    assert response.status == 201 and "Idempotent-Replayed" not in response.headers
    assert second["id"] != first["id"]
    async with api.services.store.session() as s, s.begin():
        record = await s.get(IdempotencyRecord, ("acme", "order-9"))
        assert record is not None and record.call_id == second["id"]


# -- listing ---------------------------------------------------------------------------------------

async def test_pagination_walks_every_call_newest_first(api: Api) -> None:
    created = []
    for i in range(5):
        _, body = await api.create(type_c(reference=f"r{i}"))
        created.append(body["id"])
        api.clock.offset += timedelta(seconds=1)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response, page = await api.request("GET", "/v1/calls", params=query)
        assert response.status == 200
        seen += [c["id"] for c in page["calls"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == created[::-1]


async def test_list_filters(api: Api) -> None:
    _, a = await api.create()
    _, b = await api.create(type_c(to="010-3333-4444"))
    await api.request("POST", f"/v1/calls/{b['id']}/cancel")

    async def ids(**params: str) -> list[str]:
        response, page = await api.request("GET", "/v1/calls", params=params)
        assert response.status == 200, page
        return [c["id"] for c in page["calls"]]

    assert await ids(state="queued") == [a["id"]]
    assert await ids(state="queued,canceled") == [b["id"], a["id"]]
    assert await ids(to="+82 10-3333-4444") == [b["id"]]
    assert await ids(to="01033334444") == [b["id"]]
    assert await ids(scenario="type_a") == []
    assert await ids(outcome="canceled") == [b["id"]]
    later = (api.clock() + timedelta(minutes=1)).isoformat()
    assert await ids(created_from=later) == []
    assert len(await ids(created_to=later)) == 2


@pytest.mark.parametrize(("query", "field", "code"), [
    ("limit=0", "limit", "out_of_range"),
    ("limit=201", "limit", "out_of_range"),
    ("limit=ten", "limit", "out_of_range"),
    ("state=queued,lost", "state", "invalid_state"),
    ("to=hello", "to", "invalid_number"),
    ("created_from=yesterday", "created_from", "invalid_datetime"),
    ("created_to=2026-01-01T00:00:00", "created_to", "missing_timezone"),
    ("cursor=!!!", "cursor", "invalid_cursor"),
    ("colour=red", "colour", "unknown_parameter"),
    ("limit=1&limit=2", "limit", "repeated_parameter"),
])
async def test_bad_list_query_is_422_naming_the_parameter(api: Api, query: str, field: str,
                                                          code: str) -> None:
    response, problem = await api.request("GET", f"/v1/calls?{query}")
    assert_problem(response, problem, 422, code, field)


# -- cancel ----------------------------------------------------------------------------------------

async def test_cancel_a_queued_call_then_again_is_409(api: Api) -> None:
    _, call = await api.create()
    response, body = await api.request("POST", f"/v1/calls/{call['id']}/cancel")
    assert response.status == 200
    assert body["state"] == "canceled" and body["outcome"] == "canceled"
    assert body["cancel_requested"] is False
    response, problem = await api.request("POST", f"/v1/calls/{call['id']}/cancel")
    assert_problem(response, problem, 409, "not_cancelable", "state")


async def test_cancel_a_call_being_dialed_asks_its_node(api: Api) -> None:
    _, call = await api.create()
    await api.set_call(call["id"], state="dialing")
    response, body = await api.request("POST", f"/v1/calls/{call['id']}/cancel")
    assert response.status == 200
    assert body["state"] == "dialing" and body["cancel_requested"] is True


async def test_cancel_an_answered_call_is_409(api: Api) -> None:
    _, call = await api.create()
    await api.set_call(call["id"], state="answered")
    response, problem = await api.request("POST", f"/v1/calls/{call['id']}/cancel")
    assert_problem(response, problem, 409, "not_cancelable", "state")


async def test_cancel_an_unknown_call_is_404(api: Api) -> None:
    response, problem = await api.request("POST", "/v1/calls/call_nope/cancel")
    assert_problem(response, problem, 404, "not_found")


# -- recordings and evidence -----------------------------------------------------------------------

def wav_bytes(samples: int = 800) -> bytes:
    data = b"".join(struct.pack("<h", (i % 50) * 100) for i in range(samples))
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
              + b"data" + struct.pack("<I", len(data)))
    return header + data


async def write_recording(api: Api, call_id: str, tmp_path: Path) -> dict[str, bytes]:
    """A recording and an evidence bundle on disk, linked from the call's row."""
    root = api.services.recordings_dir
    bundle = root / "evidence" / call_id
    bundle.mkdir(parents=True)
    files = {"wav": wav_bytes(), "mp3": b"ID3\x04\x00fake mp3",
             "manifest": json.dumps({"format": "ars-evidence/1", "call_id": call_id}).encode()}
    (root / f"{call_id}.wav").write_bytes(files["wav"])
    (bundle / "recording.wav").write_bytes(files["wav"])
    (bundle / "recording.mp3").write_bytes(files["mp3"])
    (bundle / "manifest.json").write_bytes(files["manifest"])
    await api.set_call(call_id, recording=f"{call_id}.wav", evidence=f"evidence/{call_id}")
    return files


async def test_recording_and_evidence_are_served_to_the_owner(api: Api, tmp_path: Path) -> None:
    _, call = await api.create()
    files = await write_recording(api, call["id"], tmp_path)
    _, summary = await api.request("GET", f"/v1/calls/{call['id']}")
    assert summary["recording"] == f"/v1/calls/{call['id']}/recording"
    assert summary["evidence"] == f"/v1/calls/{call['id']}/evidence"

    response = await api.client.get(summary["recording"], headers=api.auth())
    assert response.status == 200 and response.content_type == "audio/wav"
    assert await response.read() == files["wav"]
    assert response.headers["X-Request-Id"]
    assert "no-store" in response.headers["Cache-Control"]

    response = await api.client.get(summary["recording"] + "?format=mp3", headers=api.auth())
    assert response.status == 200 and response.content_type == "audio/mpeg"
    assert await response.read() == files["mp3"]

    response = await api.client.get(summary["evidence"], headers=api.auth())
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.read() == files["manifest"]


async def test_a_call_without_recording_or_evidence_is_404(api: Api) -> None:
    _, call = await api.create()
    response, problem = await api.request("GET", f"/v1/calls/{call['id']}/recording")
    assert_problem(response, problem, 404, "no_recording")
    response, problem = await api.request("GET", f"/v1/calls/{call['id']}/recording?format=mp3")
    assert_problem(response, problem, 404, "no_recording")
    response, problem = await api.request("GET", f"/v1/calls/{call['id']}/evidence")
    assert_problem(response, problem, 404, "no_evidence")
    response, problem = await api.request("GET", f"/v1/calls/{call['id']}/recording?format=ogg")
    assert_problem(response, problem, 422, "invalid_format", "format")


async def test_a_stored_path_outside_the_recordings_dir_is_not_served(api: Api,
                                                                      tmp_path: Path) -> None:
    _, call = await api.create()
    (tmp_path / "outside.wav").write_bytes(wav_bytes())
    await api.set_call(call["id"], recording="../outside.wav")
    response, problem = await api.request("GET", f"/v1/calls/{call['id']}/recording")
    assert_problem(response, problem, 404, "no_recording")


# -- webhooks, scenarios ---------------------------------------------------------------------------

async def test_webhook_events_are_listed_with_dead_letters(api: Api) -> None:
    _, a = await api.create(type_c(callback_url="https://core.example/hook"))
    _, b = await api.create(type_c(callback_url="https://core.example/hook"))
    _, c = await api.create(type_c(callback_url="https://core.example/hook"), tenant="rival")
    for call, tenant in ((a, "acme"), (b, "acme"), (c, "rival")):
        response, _ = await api.request("POST", f"/v1/calls/{call['id']}/cancel", tenant=tenant)
        assert response.status == 200
    async with api.services.store.session() as s, s.begin():
        await s.execute(update(WebhookEvent).where(WebhookEvent.call_id == b["id"])
                        .values(status=DEAD, attempts=41, last_status=500,
                                last_error="HTTP 500"))

    response, body = await api.request("GET", "/v1/webhooks")
    assert response.status == 200
    events = body["events"]
    assert {e["call_id"] for e in events} == {a["id"], b["id"]}
    assert {e["type"] for e in events} == {"call.canceled"}
    _, dead = await api.request("GET", "/v1/webhooks?status=dead")
    assert [(e["call_id"], e["attempts"], e["last_error"]) for e in dead["events"]] == [
        (b["id"], 41, "HTTP 500")]
    _, pending = await api.request("GET", f"/v1/webhooks?status=pending&call_id={a['id']}")
    assert [e["call_id"] for e in pending["events"]] == [a["id"]]
    _, detail = await api.request("GET", f"/v1/calls/{b['id']}")
    assert [e["status"] for e in detail["webhooks"]] == ["dead"]
    response, problem = await api.request("GET", "/v1/webhooks?status=lost")
    assert_problem(response, problem, 422, "invalid_status", "status")


async def test_scenarios_are_limited_to_the_tenants_allowed_ones(api: Api) -> None:
    _, every = await api.request("GET", "/v1/scenarios")
    names = [s["name"] for s in every["scenarios"]]
    assert names == sorted(api.services.catalog.scenarios) and "type_c" in names
    type_c_doc = next(s for s in every["scenarios"] if s["name"] == "type_c")
    assert {"name": "code", "secret": True}.items() <= next(
        p for p in type_c_doc["params"] if p["name"] == "code").items()
    _, small = await api.request("GET", "/v1/scenarios", tenant="small")
    assert [s["name"] for s in small["scenarios"]] == ["type_a"]


@pytest.mark.parametrize("content_type", ["text/yaml", "application/yaml", "text/plain"])
async def test_validate_accepts_a_shipped_scenario(api: Api, content_type: str) -> None:
    text = (SCENARIOS / "type_a.yaml").read_text(encoding="utf-8")
    response, report = await api.request("POST", "/v1/scenarios/validate",
                                         data=text.encode(),
                                         headers={"Content-Type": content_type})
    assert response.status == 200
    assert report == {"valid": True, "name": "type_a", "errors": []}


async def test_validate_reports_line_numbered_errors(api: Api) -> None:
    text = (SCENARIOS / "type_a.yaml").read_text(encoding="utf-8")
    broken = text.replace("    next: read_code", "    next: no_such_step", 1)
    line = broken.splitlines().index("    next: no_such_step") + 1
    response, report = await api.request("POST", "/v1/scenarios/validate",
                                         json={"yaml": broken})
    assert response.status == 200
    assert report["valid"] is False and report["name"] is None
    assert any(e["line"] == line for e in report["errors"]), report
    assert all({"line", "column", "code", "message"} == set(e) for e in report["errors"])

    response, report = await api.request("POST", "/v1/scenarios/validate",
                                         data="scenario: [unclosed\n",
                                         headers={"Content-Type": "text/yaml"})
    assert report["valid"] is False
    assert report["errors"][0]["code"] == "yaml-syntax" and report["errors"][0]["line"] >= 1


async def test_validate_refuses_other_bodies(api: Api) -> None:
    response, problem = await api.request("POST", "/v1/scenarios/validate", data=b"x",
                                          headers={"Content-Type": "image/png"})
    assert_problem(response, problem, 415, "unsupported_media_type")
    response, problem = await api.request("POST", "/v1/scenarios/validate", json={"yml": "x"})
    assert_problem(response, problem, 422, "required", "yaml")
    response, problem = await api.request("POST", "/v1/scenarios/validate", data=b"\xff\xfe",
                                          headers={"Content-Type": "text/yaml"})
    assert_problem(response, problem, 400, "invalid_encoding")


# -- secrets ---------------------------------------------------------------------------------------

async def test_the_code_never_comes_back_in_clear(api: Api, tmp_path: Path) -> None:
    body = type_c(callback_url="https://core.example/hook")
    _, first = await api.create(body, key="k-secret")
    await api.create(body, key="k-secret")
    await api.create(type_c(reference="other"), key="k-secret")  # 422 reused
    _, second = await api.create()
    await api.request("GET", f"/v1/calls/{first['id']}")
    await api.request("GET", "/v1/calls")
    await api.request("POST", f"/v1/calls/{first['id']}/cancel")
    await api.request("POST", f"/v1/calls/{first['id']}/cancel")  # 409
    await api.request("GET", "/v1/webhooks")
    await api.request("GET", f"/v1/calls/{first['id']}")
    await api.create(type_c(params={"code": CODE, "extra": CODE}))
    await api.create(type_c(to=CODE))
    await api.request("POST", "/v1/calls", data=json.dumps(body)[:-3],
                      headers={"Content-Type": "application/json"})
    await api.request("GET", f"/v1/calls?to={CODE}")
    await api.request("GET", f"/v1/calls?cursor={CODE}")
    await api.request("POST", f"/v1/calls/{second['id']}/cancel", tenant="rival")
    assert len(api.texts) >= 15
    leaks = [text for text in api.texts if CODE in text]
    assert leaks == []
    async with api.services.store.session() as s, s.begin():
        rows = [json.dumps(c.params) for c in (await s.scalars(select(Call))).all()]
        rows += [e.body for e in (await s.scalars(select(WebhookEvent))).all()]
        rows += [json.dumps(r.response) for r in
                 (await s.scalars(select(IdempotencyRecord))).all()]
    assert rows and not [row for row in rows if CODE in row]
