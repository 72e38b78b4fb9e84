"""The console and /metrics on a large calls table: how long the pages an operator opens take,
how fast the settlement CSV streams, and what one Prometheus scrape costs.

The store is SQLite (a file in a temporary directory, as ``serve`` sets it up) filled with
``--calls`` calls of three tenants spread over two months (a fifth of them in the month the
usage page and the CSV read), inserted directly. The app runs in this process on a real
socket; requests are sequential (an operator's browser, not a load test), ``--repeat`` times
each after one warm-up, and the page must answer 200. Prints median and max per page, the CSV's
rows per second, and the scrape's time.

Peers, measured in the same run: the API's own ``GET /v1/calls`` (the page the history most
resembles), and a bare ``SELECT count(*)`` over the month (the floor any usage page pays).

    .venv/bin/python bench/bench_console.py           # --calls 100000 --repeat 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import result  # noqa: E402

PASSWORD = "bench-password-1"


async def fill(store: Any, calls: int) -> None:
    """``calls`` calls over Oct–Nov 2026, 3 tenants, mixed states/outcomes, plain INSERTs."""
    from sqlalchemy import insert

    from ars_engine.store.models import Call, CallTransition, Tenant

    start = datetime(2026, 10, 1, tzinfo=UTC)
    span = timedelta(days=61).total_seconds()
    mixes = [("finished", "success"), ("finished", "failed"), ("failed", "busy"),
             ("failed", "no_answer"), ("finished", "timeout"), ("canceled", "canceled")]
    async with store.session() as s, s.begin():
        for tenant in ("bank", "card", "pay"):
            s.add(Tenant(id=tenant, name=tenant.title(), created_at=start, disabled=False,
                         allowed_scenarios=None, max_concurrent=10, per_number_limit=5,
                         per_number_window_s=3600, destination_rules={}))
    batch = 5000
    for first in range(0, calls, batch):
        rows, moves = [], []
        for i in range(first, min(calls, first + batch)):
            at = start + timedelta(seconds=span * i / calls)
            state, outcome = mixes[i % len(mixes)]
            answered = at + timedelta(seconds=4) if outcome in ("success", "failed",
                                                                 "timeout") else None
            call_id = f"call_{i:012d}"
            rows.append(dict(
                id=call_id, tenant_id=("bank", "card", "pay")[i % 3], scenario="type_c",
                scenario_sha256="0" * 64, destination=f"+8210{i % 10**8:08d}",
                params={"code": "******"}, sealed_params=None, callback_url=None,
                reference=f"ref-{i}", retry_policy={}, state=state, outcome=outcome,
                reason=None, result=None, timeline=None, sip_status=200, attempts=1,
                not_before=at, lease_owner=None, lease_expires_at=None,
                cancel_requested=False, created_at=at, updated_at=at, answered_at=answered,
                ended_at=at + timedelta(seconds=40), recording=None, evidence=None,
                next_event_seq=1))
            moves.append(dict(call_id=call_id, from_state=None, to_state="queued", at=at,
                              attempt=0, reason="created", node=None))
        async with store.session() as s, s.begin():
            await s.execute(insert(Call), rows)
            await s.execute(insert(CallTransition), moves)
        print(f"\r  filled {min(calls, first + batch):,}/{calls:,}", end="", flush=True)
    print()


async def run(calls: int, repeat: int) -> None:
    from aiohttp import ClientSession, CookieJar, web
    from sqlalchemy import func, select

    from ars_engine.api.app import create_app
    from ars_engine.config import Settings
    from ars_engine.console import accounts
    from ars_engine.service.catalog import ScenarioCatalog
    from ars_engine.service.runtime import Services
    from ars_engine.store import repo
    from ars_engine.store.db import Store
    from ars_engine.store.models import Call

    with tempfile.TemporaryDirectory(prefix="ars-bench-console-") as tmp:
        store = Store(f"sqlite+aiosqlite:///{tmp}/ars.db")
        await store.upgrade()
        print(f"bench_console: {calls:,} calls in SQLite, {repeat} requests per page")
        t0 = time.perf_counter()
        await fill(store, calls)
        print(f"  fill: {time.perf_counter() - t0:.1f} s")
        settings = Settings.from_env({"ARS_DATA_DIR": tmp})
        services = Services.build(settings, store, ScenarioCatalog.load(ROOT / "scenarios",
                                                                         None))
        now = datetime.now(UTC)
        async with store.session() as s, s.begin():
            await accounts.create_operator(s, "admin", PASSWORD, "admin", None, now=now)
            _, api_key = await repo.create_api_key(s, "bank", services.keys.api_key_pepper,
                                                   now=now)
        runner = web.AppRunner(create_app(services), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
            page = await (await http.get(f"{base}/console/login")).text()
            token = page.split('name="csrf_token" value="')[1].split('"')[0]
            await http.post(f"{base}/console/login", data={
                "username": "admin", "password": PASSWORD, "csrf_token": token})

            async def timed(path: str, headers: dict[str, str] | None = None) -> list[float]:
                out = []
                for i in range(repeat + 1):
                    t = time.perf_counter()
                    response = await http.get(base + path, headers=headers)
                    body = await response.read()
                    assert response.status == 200, (path, response.status, body[:200])
                    if i:
                        out.append((time.perf_counter() - t) * 1000)
                return out

            pages = [
                ("console: live calls", "/console/", None),
                ("console: history (50 rows)", "/console/calls", None),
                ("console: history, search last digits", "/console/calls?q=12345678", None),
                ("console: history, tenant+state filter",
                 "/console/calls?tenant=card&state=failed", None),
                ("console: usage 2026-11 (all tenants)", "/console/usage?month=2026-11", None),
                ("console: scenario type_c (graph)", "/console/scenarios/type_c", None),
                ("peer: API GET /v1/calls (50 rows)", "/v1/calls?limit=50",
                 {"Authorization": f"Bearer {api_key}"}),
                ("/metrics scrape", "/metrics", None),
            ]
            print(f"  {'page':42} {'median ms':>10} {'max ms':>9}")
            results = {}
            for name, path, headers in pages:
                times = await timed(path, headers)
                results[name] = statistics.median(times)
                print(f"  {name:42} {statistics.median(times):10.1f} {max(times):9.1f}")
            start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
            t = time.perf_counter()
            async with store.session() as s:
                month = (await s.execute(select(func.count()).select_from(Call).where(
                    Call.created_at >= start, Call.created_at < end))).scalar_one()
            count_ms = (time.perf_counter() - t) * 1000
            print(f"  {'peer: SELECT count(*) of the month':42} {count_ms:10.1f}")
            t = time.perf_counter()
            response = await http.get(f"{base}/console/usage.csv?month=2026-11")
            raw = await response.read()
            seconds = time.perf_counter() - t
            rows = raw.count(b"\n") - 1
            assert rows == month, (rows, month)
            print(f"  settlement CSV 2026-11: {rows:,} rows, {len(raw) / 1e6:.1f} MB in "
                  f"{seconds:.2f} s = {rows / seconds:,.0f} rows/s")
            ratio = results["console: history (50 rows)"] / \
                results["peer: API GET /v1/calls (50 rows)"]
            print(f"  history page / API list: {ratio:.2f}×")
            result("console_history_page", results["console: history (50 rows)"],
                   "ms median", "API GET /v1/calls?limit=50",
                   results["peer: API GET /v1/calls (50 rows)"], better="lower")
        await runner.cleanup()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.repeat))


if __name__ == "__main__":
    main()
