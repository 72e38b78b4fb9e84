"""The ``/v1`` routes. Every handler works for the request's tenant (:data:`auth.TENANT`) only:
another tenant's call is "not found", never "forbidden", so ids reveal nothing.

Handlers translate HTTP to the service (:mod:`ars_engine.service.calls`) and back; the checks of a
create-call body live there, the checks of query strings here (a 422 names the parameter).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from aiohttp import web
from multidict import MultiMapping

from ..errors import FieldError, ScenarioInvalid
from ..scenario.loader import load_scenario_text
from ..service.calls import dumps
from ..service.catalog import describe_scenario
from ..service.evidence import DERIVATIVE_NAME, MANIFEST_NAME
from ..service.payloads import call_detail, call_summary, event_json
from ..service.policy import normalize_e164
from ..service.runtime import Services
from ..store import repo
from ..store.models import DEAD, DELIVERED, PENDING, STATES, Call, Tenant
from .auth import SERVICES, TENANT
from .openapi import openapi_document
from .problems import Problem

log = logging.getLogger("ars_engine.api")
routes = web.RouteTableDef()

MAX_PAGE = 200
DEFAULT_PAGE = 50
EVENT_STATUSES = (PENDING, DELIVERED, DEAD)
YAML_TYPES = frozenset({"text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml",
                        "text/plain"})
LIST_PARAMS = frozenset({"state", "scenario", "to", "outcome", "created_from", "created_to",
                         "limit", "cursor"})
PRIVATE = {"Cache-Control": "private, no-store"}

T = TypeVar("T")


def _json(body: object, *, status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def _context(request: web.Request) -> tuple[Services, Tenant]:
    return request.app[SERVICES], request[TENANT]


# -- calls -----------------------------------------------------------------------------------------

@routes.post("/v1/calls")
async def create_call(request: web.Request) -> web.Response:
    """Place a call (queued); replays the first answer for a repeated Idempotency-Key."""
    services, tenant = _context(request)
    body = await read_json(request)
    created = await services.calls.create(
        tenant, body, idempotency_key=request.headers.get("Idempotency-Key"),
        render=call_summary)
    headers = {"Location": f"/v1/calls/{created.body['id']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(created.body, status=created.status, headers=headers)


@routes.get("/v1/calls")
async def list_calls(request: web.Request) -> web.Response:
    """A page of the tenant's calls, newest first; ``next_cursor`` fetches the next page."""
    services, tenant = _context(request)
    query = request.query
    _check_names(query, LIST_PARAMS)
    states = _states(_one(query, "state"))
    to = _one(query, "to")
    destination = normalize_e164(to, field="to") if to is not None else None
    created_from = _parsed(query, "created_from", _datetime)
    created_to = _parsed(query, "created_to", _datetime)
    limit = _parsed(query, "limit", _limit) or DEFAULT_PAGE
    cursor = _one(query, "cursor")
    if cursor is not None:
        _check_cursor(cursor)
    async with services.store.session() as s, s.begin():
        calls, next_cursor = await repo.list_calls(
            s, tenant.id, states=states, scenario=_one(query, "scenario"),
            destination=destination, outcome=_one(query, "outcome"),
            created_from=created_from, created_to=created_to, limit=limit, cursor=cursor)
    return _json({"calls": [call_summary(c) for c in calls], "next_cursor": next_cursor})


@routes.get("/v1/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    """The call with its transitions, its scenario timeline and its webhook deliveries."""
    services, tenant = _context(request)
    call, events = await services.calls.get(tenant.id, request.match_info["call_id"])
    return _json(call_detail(call, events))


@routes.post("/v1/calls/{call_id}/cancel")
async def cancel_call(request: web.Request) -> web.Response:
    """Cancel a queued call, or ask the node dialing it to stop (``cancel_requested``)."""
    services, tenant = _context(request)
    call = await services.calls.cancel(tenant.id, request.match_info["call_id"])
    return _json({**call_summary(call), "cancel_requested": bool(call.cancel_requested)})


@routes.get("/v1/calls/{call_id}/recording")
async def get_recording(request: web.Request) -> web.StreamResponse:
    """The call's recording: the WAV as recorded, or ``?format=mp3`` the evidence derivative."""
    services, tenant = _context(request)
    _check_names(request.query, {"format"})
    fmt = _one(request.query, "format") or "wav"
    if fmt not in ("wav", "mp3"):
        raise FieldError("format", "invalid_format", "expected wav or mp3")
    call = await _own_call(services, tenant, request.match_info["call_id"])
    if fmt == "wav":
        path = services.stored_file(call.id, call.recording)
    else:
        path = services.stored_file(call.id, call.evidence, DERIVATIVE_NAME, optional=True)
    if path is None:
        raise Problem(404, "no_recording", f"call {call.id!r} has no {fmt} recording")
    return web.FileResponse(path, headers={
        **PRIVATE, "Content-Type": "audio/wav" if fmt == "wav" else "audio/mpeg",
        "Content-Disposition": f'attachment; filename="{call.id}.{fmt}"'})


@routes.get("/v1/calls/{call_id}/evidence")
async def get_evidence(request: web.Request) -> web.StreamResponse:
    """The call's signed evidence manifest, byte for byte as written (its signature covers it)."""
    services, tenant = _context(request)
    call = await _own_call(services, tenant, request.match_info["call_id"])
    path = services.stored_file(call.id, call.evidence, MANIFEST_NAME)
    if path is None:
        raise Problem(404, "no_evidence", f"call {call.id!r} has no evidence bundle")
    return web.FileResponse(path, headers={**PRIVATE,
                                           "Content-Type": "application/json; charset=utf-8"})


async def _own_call(services: Services, tenant: Tenant, call_id: str) -> Call:
    async with services.store.session() as s, s.begin():
        call = await repo.get_call(s, tenant.id, call_id)
    if call is None:
        raise Problem(404, "not_found", f"no call {call_id!r}")
    return call


# -- webhooks and scenarios ------------------------------------------------------------------------

@routes.get("/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    """The tenant's webhook events, newest first: pending, delivered and dead letters."""
    services, tenant = _context(request)
    query = request.query
    _check_names(query, {"status", "call_id", "limit"})
    status = _one(query, "status")
    if status is not None and status not in EVENT_STATUSES:
        raise FieldError("status", "invalid_status", f"expected one of {', '.join(EVENT_STATUSES)}")
    async with services.store.session() as s, s.begin():
        events = await repo.list_events(s, tenant.id, call_id=_one(query, "call_id"),
                                        status=status,
                                        limit=_parsed(query, "limit", _limit) or 100)
    return _json({"events": [event_json(e) for e in events]})


@routes.get("/v1/scenarios")
async def list_scenarios(request: web.Request) -> web.Response:
    """The scenarios this tenant may use."""
    services, tenant = _context(request)
    allowed = tenant.allowed_scenarios
    scenarios = [describe_scenario(sc) for name, sc in sorted(services.catalog.scenarios.items())
                 if allowed is None or name in allowed]
    return _json({"scenarios": scenarios})


@routes.post("/v1/scenarios/validate")
async def validate_scenario(request: web.Request) -> web.Response:
    """Validate scenario YAML (the body, or JSON ``{"yaml": …}``) without saving it."""
    services, _ = _context(request)
    text = await _scenario_text(request)
    media = services.catalog.media
    prompts = media.catalogue if media is not None else None
    try:
        scenario = await asyncio.to_thread(load_scenario_text, text, "<request>",
                                           prompts=prompts)
    except ScenarioInvalid as exc:
        return _json({"valid": False, "name": None,
                      "errors": [{"line": e.line, "column": e.column, "code": e.code,
                                  "message": e.message} for e in exc.errors]})
    return _json({"valid": True, "name": scenario.name, "errors": []})


async def _scenario_text(request: web.Request) -> str:
    if request.content_type == "application/json":
        body = await read_json(request)
        text = body.get("yaml") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise FieldError("yaml", "required", 'expected {"yaml": "<scenario text>"}')
        return text
    if request.content_type not in YAML_TYPES:
        raise Problem(415, "unsupported_media_type",
                      "send the scenario as text/yaml (or JSON {\"yaml\": …})")
    raw = await _read(request)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "invalid_encoding", "the scenario must be UTF-8 text") from None


@routes.get("/v1/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 document (no API key needed)."""
    return _json(openapi_document())


# -- request helpers -------------------------------------------------------------------------------

async def _read(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SERVICES].settings.service.max_body_bytes
        raise Problem(413, "body_too_large",
                      f"the request body is larger than {limit} bytes") from None


async def read_json(request: web.Request) -> object:
    """The request body as JSON; Problem 400 ``invalid_json`` saying where it breaks (never
    quoting it: a body may hold a code), 413 when it is too large."""
    raw = await _read(request)
    if not raw.strip():
        raise Problem(400, "invalid_json", "the request body is empty; expected a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise Problem(400, "invalid_json", "the request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, "invalid_json", f"the request body is not valid JSON: {exc.msg} "
                      f"at line {exc.lineno}, column {exc.colno}") from None
    except ValueError:
        raise Problem(400, "invalid_json",
                      "the request body is not valid JSON: NaN and Infinity are not JSON"
                      ) from None


def _no_constant(name: str) -> object:
    raise ValueError(name)


def _check_names(query: MultiMapping[str], known: set[str] | frozenset[str]) -> None:
    for name in query:
        if name not in known:
            raise FieldError(name, "unknown_parameter",
                             f"unknown query parameter; expected some of {sorted(known)}")


def _one(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise FieldError(name, "repeated_parameter", "give this parameter once")
    if not values or values[0] == "":
        return None
    return values[0]


def _parsed(query: MultiMapping[str], name: str, parse: Callable[[str, str], T]) -> T | None:
    value = _one(query, name)
    return None if value is None else parse(name, value)


def _limit(name: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise FieldError(name, "out_of_range", f"expected an integer from 1 to {MAX_PAGE}")
    return int(value)


def _datetime(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(name, "invalid_datetime",
                         "expected an ISO 8601 date-time such as 2026-11-25T09:00:00+09:00"
                         ) from None
    if moment.tzinfo is None:
        raise FieldError(name, "missing_timezone", "give a UTC offset (Z or +09:00)")
    return moment


def _states(value: str | None) -> list[str]:
    if value is None:
        return []
    states = [part.strip() for part in value.split(",") if part.strip()]
    for state in states:
        if state not in STATES:
            raise FieldError("state", "invalid_state", f"expected some of {', '.join(STATES)}")
    return states


def _check_cursor(cursor: str) -> None:
    at, _ = repo.decode_cursor(cursor)
    if at.tzinfo is None:  # not one we made: ours carry +00:00
        raise FieldError("cursor", "invalid_cursor",
                         "not a cursor returned by this API (use next_cursor as given)")

