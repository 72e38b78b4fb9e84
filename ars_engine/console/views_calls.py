"""Live calls (Server-Sent Events), the call history and one call's page."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ..errors import FieldError
from ..service.evidence import DERIVATIVE_NAME, MANIFEST_NAME, verify_evidence
from ..service.runtime import Services
from ..service.usage import mask_destination
from ..store.models import STATES, Call
from . import accounts
from .app import (
    CLOSING,
    LANG,
    OPERATOR,
    SERVICES,
    SESSION_COOKIE,
    render,
    tenant_scope,
)
from .i18n import state_name, translate
from .queries import (
    HistoryFilter,
    call_story,
    distinct_outcomes,
    live_calls,
    search_calls,
    tenants,
)

log = logging.getLogger("ars_engine.console")
routes = web.RouteTableDef()
LIVE_REFRESH_SECONDS = 2.0  # other nodes' changes show within this time (ours at once)
KEEPALIVE_SECONDS = 15.0


def _live_row(call: Call, lang: str, now: datetime) -> dict[str, Any]:
    return {"id": call.id, "tenant": call.tenant_id, "scenario": call.scenario,
            "to": mask_destination(call.destination), "state": call.state,
            "state_name": state_name(lang, call.state),
            "age": int((now - call.created_at).total_seconds()),
            "attempts": call.attempts, "url": f"/console/calls/{call.id}"}


async def _live_snapshot(services: Services, tenant_id: str | None, lang: str
                         ) -> dict[str, Any]:
    async with services.store.session() as s, s.begin():
        rows, active, queued = await live_calls(s, tenant_id)
    now = services.clock()
    return {"active": active, "queued": queued,
            "status": translate(lang, "live_status", active=active, queued=queued),
            "calls": [_live_row(c, lang, now) for c in rows]}


@routes.get("/")
async def live_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    snapshot = await _live_snapshot(services, tenant_scope(request), request[LANG])
    return render(request, "live.html", nav="live", snapshot=snapshot)


@routes.get("/live/events")
async def live_events(request: web.Request) -> web.StreamResponse:
    """``text/event-stream``: a ``calls`` event with the whole live table whenever it changes
    (this node's writes wake it at once; other nodes' show within LIVE_REFRESH_SECONDS).
    The stream ends when the session does."""
    services = request.app[SERVICES]
    tenant_id, lang = tenant_scope(request), request[LANG]
    token = request.cookies.get(SESSION_COOKIE, "")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    last: dict[str, Any] | None = None
    quiet = 0.0
    closing = request.app[CLOSING]
    try:
        while not closing.is_set():
            async with services.store.session() as s, s.begin():
                alive = await accounts.session_operator(s, token, now=services.clock())
            if alive is None:
                await response.write(b"event: signed-out\ndata: {}\n\n")
                break
            snapshot = await _live_snapshot(services, tenant_id, lang)
            comparable = {**snapshot, "calls": [{**c, "age": 0} for c in snapshot["calls"]]}
            if comparable != last or quiet >= KEEPALIVE_SECONDS:
                data = json.dumps(snapshot, ensure_ascii=False)
                await response.write(f"event: calls\ndata: {data}\n\n".encode())
                last, quiet = comparable, 0.0
            woken = await services.changes.wait(LIVE_REFRESH_SECONDS)
            quiet += 0.0 if woken else LIVE_REFRESH_SECONDS
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    return response


def _day(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise FieldError(name, "invalid_date", f"{name}: expected YYYY-MM-DD") from None


@routes.get("/calls")
async def history(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    q = request.query
    scope = tenant_scope(request)
    error = ""
    try:
        until = _day(q.get("to", ""), "to")
        f = HistoryFilter(
            q=q.get("q", "")[:100], state=q.get("state", "") if q.get("state") in STATES else "",
            outcome=q.get("outcome", "")[:64], scenario=q.get("scenario", "")[:100],
            tenant=q.get("tenant") or None if scope is None else None,
            created_from=_day(q.get("from", ""), "from"),
            created_to=until + timedelta(days=1) if until else None,
            cursor=q.get("cursor") or None)
        async with services.store.session() as s, s.begin():
            rows, cursor = await search_calls(s, scope, f)
            outcomes = await distinct_outcomes(s, scope)
            tenant_list = await tenants(s) if request[OPERATOR].role == "admin" else []
    except FieldError as exc:
        error, rows, cursor, outcomes, tenant_list = str(exc), [], None, [], []
        f = HistoryFilter()
    scenarios = sorted(services.catalog.scenarios)
    next_query = None
    if cursor:
        params = {k: v for k, v in q.items() if k != "cursor"}
        params["cursor"] = cursor
        next_query = "&".join(f"{k}={_quote(v)}" for k, v in params.items())
    return render(request, "calls.html", nav="history", calls=rows, filter=f, error=error,
                  states=STATES, outcomes=outcomes, scenarios=scenarios, tenants=tenant_list,
                  next_query=next_query, mask=mask_destination, form=q)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


async def _story(request: web.Request) -> tuple[Call, Any]:
    services = request.app[SERVICES]
    async with services.store.session() as s, s.begin():
        found = await call_story(s, tenant_scope(request), request.match_info["call_id"][:40])
    if found is None:
        raise web.HTTPNotFound()
    return found


@routes.get("/calls/{call_id}")
async def call_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    call, events = await _story(request)
    recording = services.stored_file(call.id, call.recording)
    manifest = services.stored_file(call.id, call.evidence, MANIFEST_NAME)
    report = verify_evidence(manifest, key=services.keys.evidence_key) if manifest else None
    return render(request, "call.html", nav="history", call=call, events=events,
                  has_recording=recording is not None, evidence=report,
                  has_evidence=manifest is not None,
                  params_text=json.dumps(call.params or {}, ensure_ascii=False, indent=2),
                  result_text=json.dumps(call.result or {}, ensure_ascii=False, indent=2),
                  destination=mask_destination(call.destination))


@routes.get("/calls/{call_id}/recording")
async def call_recording(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    call, _ = await _story(request)
    mp3 = request.query.get("format") == "mp3"
    path = services.stored_file(call.id, call.evidence, DERIVATIVE_NAME, optional=True) \
        if mp3 else services.stored_file(call.id, call.recording)
    if path is None:
        raise web.HTTPNotFound()
    disposition = "attachment" if request.query.get("download") else "inline"
    return web.FileResponse(path, headers={
        "Content-Type": "audio/mpeg" if mp3 else "audio/wav", "Cache-Control": "no-store",
        "Content-Disposition": f'{disposition}; filename="{call.id}.{"mp3" if mp3 else "wav"}"'})


@routes.get("/calls/{call_id}/evidence")
async def call_evidence(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    call, _ = await _story(request)
    path = services.stored_file(call.id, call.evidence, MANIFEST_NAME)
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={
        "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{call.id}-evidence.json"'})
