"""Scenarios (YAML with validation in place, the flow as a graph, the simulator), usage per
tenant per month with the settlement CSV and the rate charts, and the alerts."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ..scenario.model import Scenario
from ..service import usage
from ..store import alert_queries
from ..store.models import FIRING, Tenant
from .app import LANG, OPERATOR, SERVICES, render, tenant_scope
from .charts import Series, line_chart_svg
from .graph import graph_text, render_svg, scenario_graph
from .i18n import translate
from .queries import tenants as list_tenants
from .simulator import SimulationError, load_text, simulate, validate_text

log = logging.getLogger("ars_engine.console")
routes = web.RouteTableDef()
MAX_YAML_CHARS = 200_000
SIM_AUDIO_KEEP = 20  # simulations whose audio stays playable, per node …
SIM_AUDIO_SECONDS = 1800.0  # … for this long
SIM_AUDIO = web.AppKey("console_sim_audio", OrderedDict)


# -- scenarios ---------------------------------------------------------------------------------


async def _visible(request: web.Request) -> set[str] | None:
    """Scenario names the operator may see: their tenant's allowed ones (None: all)."""
    operator = request[OPERATOR]
    if operator.role == "admin" or operator.tenant_id is None:
        return None
    services = request.app[SERVICES]
    async with services.store.session() as s, s.begin():
        tenant = await s.get(Tenant, operator.tenant_id)
    allowed = tenant.allowed_scenarios if tenant is not None else []
    return None if allowed is None else set(allowed)


@routes.get("/scenarios")
async def scenarios_page(request: web.Request) -> web.Response:
    catalog = request.app[SERVICES].catalog
    visible = await _visible(request)
    return render(request, "scenarios.html", nav="scenarios",
                  scenarios=[sc for name, sc in sorted(catalog.scenarios.items())
                             if visible is None or name in visible],
                  problems=sorted(catalog.problems.items()))


async def _scenario(request: web.Request) -> Scenario:
    name = request.match_info["name"]
    scenario = request.app[SERVICES].catalog.get(name)
    visible = await _visible(request)
    if scenario is None or (visible is not None and name not in visible):
        raise web.HTTPNotFound()
    return scenario


def _page(request: web.Request, scenario: Scenario, text: str, *,
          shown: Scenario | None = None, problems: list[Any] | None = None,
          simulation: Any = None, sim_error: str = "", params: dict[str, str] | None = None,
          keys: str = "", status: int = 200) -> web.Response:
    shown = shown or scenario
    graph = scenario_graph(shown)
    lines = text.splitlines() or [""]
    bad_lines = {p.line for p in problems or [] if p.line}
    return render(request, "scenario.html", status=status, nav="scenarios", scenario=scenario,
                  shown=shown, yaml_text=text, lines=lines, bad_lines=bad_lines,
                  problems=problems, svg=render_svg(graph, title=f"{shown.name}: {shown.title}"),
                  flow=graph_text(graph), simulation=simulation, sim_error=sim_error,
                  params=params or {}, keys=keys)


@routes.get("/scenarios/{name}")
async def scenario_page(request: web.Request) -> web.Response:
    scenario = await _scenario(request)
    text = await asyncio.to_thread(Path(scenario.path).read_text, encoding="utf-8")
    return _page(request, scenario, text)


async def _form_text(request: web.Request) -> tuple[dict[str, Any], str]:
    form = await request.post()
    text = str(form.get("yaml", ""))
    if len(text) > MAX_YAML_CHARS:
        raise web.HTTPBadRequest(text=f"the scenario text is over {MAX_YAML_CHARS} characters")
    return dict(form), text.replace("\r\n", "\n")


@routes.post("/scenarios/{name}/validate")
async def scenario_validate(request: web.Request) -> web.Response:
    scenario = await _scenario(request)
    form, text = await _form_text(request)
    media = request.app[SERVICES].catalog.media
    problems = await validate_text(text, media, base_dir=_scenarios_dir(scenario))
    shown = None if problems else await load_text(text, media, base_dir=_scenarios_dir(scenario))
    return _page(request, scenario, text, shown=shown, problems=problems,
                 params=_params(form, scenario), keys=str(form.get("keys", "")),
                 status=422 if problems else 200)


def _scenarios_dir(scenario: Scenario) -> Path:
    """Where an edited scenario's ``file:`` parts may point (its catalogue's directory, nowhere
    else on the server)."""
    return Path(scenario.path).parent


def _params(form: dict[str, Any], scenario: Scenario) -> dict[str, str]:
    return {name: str(form.get(f"param_{name}", "")) for name in scenario.params}


@routes.post("/scenarios/{name}/simulate")
async def scenario_simulate(request: web.Request) -> web.Response:
    scenario = await _scenario(request)
    services = request.app[SERVICES]
    form, text = await _form_text(request)
    media = services.catalog.media
    problems = await validate_text(text, media, base_dir=_scenarios_dir(scenario))
    if problems:
        return _page(request, scenario, text, problems=problems, status=422,
                     params=_params(form, scenario), keys=str(form.get("keys", "")))
    edited = await load_text(text, media, base_dir=_scenarios_dir(scenario))
    given = {k: v for k, v in _params(form, edited).items() if v != ""}
    keys_text = str(form.get("keys", ""))
    keys = keys_text.replace("\r\n", "\n").split("\n") if keys_text.strip() else []
    try:
        result = await simulate(edited, media, given, keys)
    except SimulationError as exc:
        return _page(request, scenario, text, shown=edited, sim_error=str(exc), status=422,
                     params={k: "" for k in given}, keys=keys_text)
    audio_id = _keep_audio(request.app, result.wav)
    # parameter values are not echoed back: a secret typed for a test stays in that request
    return _page(request, scenario, text, shown=edited,
                 simulation={"result": result, "audio": f"/console/simulations/{audio_id}.wav"},
                 params={}, keys="")


def _keep_audio(app: web.Application, wav: bytes) -> str:
    store = app[SIM_AUDIO]
    now = time.monotonic()
    for key in [k for k, (_, at) in store.items() if now - at > SIM_AUDIO_SECONDS]:
        del store[key]
    while len(store) >= SIM_AUDIO_KEEP:
        store.popitem(last=False)
    audio_id = secrets.token_urlsafe(12)
    store[audio_id] = (wav, now)
    return audio_id


@routes.get("/simulations/{audio_id}.wav")
async def simulation_audio(request: web.Request) -> web.Response:
    entry = request.app[SIM_AUDIO].get(request.match_info["audio_id"])
    if entry is None:
        raise web.HTTPNotFound()
    return web.Response(body=entry[0], content_type="audio/wav",
                        headers={"Cache-Control": "no-store"})


# -- usage -------------------------------------------------------------------------------------


def _month(request: web.Request) -> tuple[str, datetime, datetime]:
    value = request.query.get("month") or datetime.now(UTC).strftime("%Y-%m")
    try:
        year, month = usage.parse_month(value)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    start, end = usage.month_bounds(year, month)
    return f"{year:04d}-{month:02d}", start, end


@routes.get("/usage")
async def usage_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    month, start, end = _month(request)
    scope = tenant_scope(request, request.query.get("tenant") or None)
    async with services.store.session() as s, s.begin():
        rows = await usage.usage_by_tenant(s, start, end, scope)
        days = await usage.daily_rates(s, start, end, scope)
        tenants = await list_tenants(s) if request[OPERATOR].role == "admin" else []
    lang = request[LANG]
    labels = [d.day.strftime("%m-%d") for d in days]
    chart = line_chart_svg(
        [Series(translate(lang, "answer_rate"), [d.answer_rate for d in days]),
         Series(translate(lang, "success_rate"), [d.success_rate for d in days])],
        title=f"{translate(lang, 'rates_chart')} ({month})", y_label="%", x_labels=labels)
    totals = {k: sum(getattr(r, k) for r in rows)
              for k in ("calls", "answered", "verified", "billable")}
    return render(request, "usage.html", nav="usage", month=month, rows=rows, days=days,
                  chart=chart, totals=totals, tenants=tenants,
                  tenant=request.query.get("tenant", ""))


@routes.get("/usage.csv")
async def usage_csv(request: web.Request) -> web.StreamResponse:
    """The raw settlement rows of the month (streamed; UTF-8 with a BOM for spreadsheets)."""
    services = request.app[SERVICES]
    month, start, end = _month(request)
    scope = tenant_scope(request, request.query.get("tenant") or None)
    name = f"settlement-{month}{'-' + scope if scope else ''}.csv"
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{name}"'})
    await response.prepare(request)
    await response.write(("\ufeff" + usage.settlement_csv_header()).encode("utf-8"))
    async with services.store.session() as s, s.begin():
        batch: list[str] = []
        async for row in usage.settlement_rows(s, start, end, scope):
            batch.append(usage.settlement_csv_line(row))
            if len(batch) >= 500:
                await response.write("".join(batch).encode("utf-8"))
                batch.clear()
        if batch:
            await response.write("".join(batch).encode("utf-8"))
    await response.write_eof()
    return response


# -- alerts ------------------------------------------------------------------------------------


@routes.get("/alerts")
async def alerts_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    async with services.store.session() as s, s.begin():
        rows = await alert_queries.list_alerts(s)
    # firing ones first, each group newest change first
    return render(request, "alerts.html", nav="alerts",
                  alerts=sorted(rows, key=lambda a: a.state != FIRING))
