"""HTTP API latency at a fixed offered rate: ``POST /v1/calls`` and ``GET /v1/calls/{id}`` on
SQLite and on PostgreSQL, against a bare aiohttp server measured the same way in the same run.

The API runs in a server subprocess (this file with ``--serve``): the store at the given URL,
migrated, the shipped scenarios (no media: nothing is dialed), no dispatcher and no webhook
sender, so what is measured is the HTTP API and the store. It creates one tenant with limits
that never bite and prints its API key. The load generator (this process, its own event loop)
offers requests open-loop: request ``i`` is due at ``start + i / rate`` whatever the earlier
ones are doing, and its latency runs from that due time to the end of the response body, so a
stalled server is charged for every request it delays (no coordinated omission). The first
``--warmup`` seconds are offered but not counted. Two phases per server:

* POST: ``type_c`` calls, each to a new number; every other one carries a unique
  Idempotency-Key (its record is written too);
* GET: the calls just created, one after the other, at the same rate.

The peer (``--serve-floor``) is the framework floor: a bare aiohttp application in the same
kind of process, with the same runner settings and runtime tuning, whose POST handler reads
and parses the JSON body and whose GET handler looks the id up in a dict; both answer with a
body of the same size as the API's median answer. The ratio is what our API costs over what
any aiohttp service would cost on this machine at this rate.

PostgreSQL is a private PostgreSQL 15 cluster (tests/pg_peer.py: fsync and synchronous_commit
off); SQLite is a file in a temporary directory (WAL, synchronous=NORMAL, as the store sets it).

    .venv/bin/python bench/bench_api.py                 # --rate 200 --seconds 10 --db both
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import cpu_seconds, machine, machine_busy_ticks, result  # noqa: E402

TARGET_P50_MS = 10.0  # issue acceptance: POST /v1/calls at 200 req/s
TARGET_P99_MS = 20.0
TENANT = "bench"
CODE = "123456"
READY = "READY"
FLOOR = "aiohttp floor"


# -- the servers (each in its own process) ---------------------------------------------------------

def timing_middleware(timings: list[tuple[float, float, str]]) -> Any:
    from aiohttp import web

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.monotonic()
        try:
            return await handler(request)
        finally:
            timings.append((started, time.monotonic() - started, request.method))

    return timing


async def run_until_signal(app: Any, port: int, key: str, timings: list[Any]) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` as ``ars-engine serve`` does until SIGTERM; print
    ``READY <key>`` once it listens, and on exit one JSON line with every request's start
    (time.monotonic), handler time and method."""
    from aiohttp import web

    from ars_engine.service.tuning import tune_runtime

    tune_runtime()  # as `ars-engine serve` does once everything long-lived is loaded
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY, key, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    print(json.dumps({"timings": timings}), flush=True)


async def serve(db_url: str, port: int, data_dir: Path) -> None:
    """The API with its store, as ``ars-engine serve`` builds it (no dispatcher)."""
    from ars_engine.api.app import create_app
    from ars_engine.config import Settings
    from ars_engine.service.catalog import ScenarioCatalog
    from ars_engine.service.runtime import Services
    from ars_engine.store import repo
    from ars_engine.store.db import Store
    from ars_engine.store.models import Tenant

    settings = Settings.from_env({"ARS_DATA_DIR": str(data_dir),
                                  "ARS_RECORDINGS_DIR": str(data_dir / "recordings")})
    store = Store(db_url)
    await store.upgrade()
    services = Services.build(settings, store, ScenarioCatalog.load(ROOT / "scenarios", None))
    now = datetime.now(UTC)
    async with store.session() as s, s.begin():
        s.add(Tenant(id=TENANT, name="Bench", created_at=now, disabled=False,
                     allowed_scenarios=None, max_concurrent=100_000,
                     per_number_limit=1_000_000, per_number_window_s=3600,
                     destination_rules={}))
        await s.flush()
        _, key = await repo.create_api_key(s, TENANT, services.keys.api_key_pepper, now=now,
                                           label="bench")
    timings: list[tuple[float, float, str]] = []
    app = create_app(services)
    app.middlewares.insert(0, timing_middleware(timings))
    try:
        await run_until_signal(app, port, key, timings)
    finally:
        await store.close()


async def serve_floor(port: int, post_size: int, get_size: int) -> None:
    """The peer: bare aiohttp, same answers' sizes, no store, no auth, no validation."""
    from aiohttp import web

    created: dict[str, bytes] = {}

    def padded(fields: dict[str, object], size: int) -> bytes:
        body = json.dumps({**fields, "pad": ""}).encode()
        return json.dumps({**fields, "pad": "x" * max(0, size - len(body))}).encode()

    async def create(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        call_id = f"call_{len(created):012d}"
        created[call_id] = padded({"id": call_id, "to": body.get("to"), "state": "queued"},
                                  get_size)
        return web.Response(body=padded({"id": call_id, "state": "queued"}, post_size),
                            status=201, content_type="application/json",
                            headers={"Location": f"/v1/calls/{call_id}"})

    async def get(request: web.Request) -> web.Response:
        body = created.get(request.match_info["call_id"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/json")

    async def openapi(request: web.Request) -> web.Response:  # the client's warm-up request
        return web.json_response({})

    timings: list[tuple[float, float, str]] = []
    app = web.Application(middlewares=[timing_middleware(timings)])
    app.router.add_post("/v1/calls", create)
    app.router.add_get("/v1/calls/{call_id}", get)
    app.router.add_get("/v1/openapi.json", openapi)
    await run_until_signal(app, port, "floor-has-no-key", timings)


# -- the load generator ----------------------------------------------------------------------------

@dataclass
class Sample:
    due: float  # time.monotonic() the request was scheduled for
    sent: float  # when the client actually started it
    done: float
    status: int  # 0: the request failed without a response
    body: bytes


@dataclass
class Result:
    server: str  # sqlite, postgresql or the floor
    phase: str  # POST or GET
    samples: list[Sample]
    window: tuple[float, float]  # (first counted due time, last counted response)
    server_ms: np.ndarray
    server_cpu: float  # share of one core used by the server process while offering
    client_cpu: float  # the same for this process (the load generator)
    database_cpu: float  # the same for the PostgreSQL server processes (0 otherwise)
    machine_busy: float  # share of all CPUs busy, anyone's
    expected: int  # the status a good answer has


def request_body(i: int) -> bytes:
    # 010-2xxx-xxxx: a new mobile number for every request (the per-number limit never bites)
    body = {"scenario": "type_c", "to": f"010-{2000 + i // 10000:04d}-{i % 10000:04d}",
            "params": {"code": CODE}}
    return json.dumps(body).encode()


async def offer(base: str, key: str, phase: str, rate: float, total: int, run_id: str,
                ids: list[str]) -> list[Sample]:
    """Offer ``total`` requests of ``phase`` open-loop at ``rate``; every sample."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=2000, limit_per_host=2000)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            sent = time.monotonic()
            body = b""
            try:
                if phase == "POST":
                    extra = {"Idempotency-Key": f"bench-{run_id}-{i}"} if i % 2 == 0 else {}
                    request = session.post(f"{base}/v1/calls", data=request_body(i),
                                           headers={**headers, **extra})
                else:
                    request = session.get(f"{base}/v1/calls/{ids[i % len(ids)]}",
                                          headers=headers)
                async with request as response:
                    body = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            samples.append(Sample(due, sent, time.monotonic(), status, body))

        # Open the connections before the clock starts (a real client keeps them alive).
        async with session.get(f"{base}/v1/openapi.json") as response:
            await response.read()
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic() + 0.05
        i = 0
        while i < total:
            now = time.monotonic()
            while i < total and start + i / rate <= now:
                tasks.append(asyncio.create_task(one(i, start + i / rate)))
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    samples.sort(key=lambda s: s.due)
    return samples


def cluster_cpu_seconds(postmaster: int | None) -> dict[int, float]:
    """CPU so far of a PostgreSQL server: its postmaster and every process it forked."""
    if postmaster is None:
        return {}
    found = {postmaster: cpu_seconds(postmaster)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                found[int(stat.parent.name)] = cpu_seconds(int(stat.parent.name))
    return found


def run_server(name: str, command: list[str], args: argparse.Namespace,
               postmaster: int | None = None) -> list[Result]:
    """Start a server (``command`` plus ``--port``), offer POST then GET load, stop it; the
    measurements of both phases. ``postmaster``: the PostgreSQL server's pid, for its CPU."""
    from tests.pg_peer import free_port

    port = free_port()
    server = subprocess.Popen([*command, "--port", str(port)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    measured: list[tuple[str, list[Sample], float, float, float, float, float]] = []
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        if len(line) != 2 or line[0] != READY:
            raise SystemExit(f"{name}: the server did not start (exit {server.poll()})")
        key = line[1]
        run_id = os.urandom(4).hex()
        total = round(args.rate * (args.warmup + args.seconds))
        ids: list[str] = []
        for phase in ("POST", "GET"):
            cpu_before, own_before = cpu_seconds(server.pid), cpu_seconds(os.getpid())
            busy_before, ticks_before = machine_busy_ticks()
            database_before = cluster_cpu_seconds(postmaster)
            started = time.monotonic()
            samples = asyncio.run(offer(f"http://127.0.0.1:{port}", key, phase, args.rate,
                                        total, run_id, ids))
            elapsed = time.monotonic() - started
            busy_after, ticks_after = machine_busy_ticks()
            database_after = cluster_cpu_seconds(postmaster)
            cpu_after, own_after = cpu_seconds(server.pid), cpu_seconds(os.getpid())
            if phase == "POST":
                ids = [json.loads(s.body)["id"] for s in samples if s.status == 201]
                if not ids:
                    raise SystemExit(f"{name}: no call was created")
            database = sum(cpu - database_before.get(pid, 0.0)
                           for pid, cpu in database_after.items())
            measured.append((phase, samples, (cpu_after - cpu_before) / elapsed,
                             (own_after - own_before) / elapsed, database / elapsed,
                             (busy_after - busy_before) / max(1, ticks_after - ticks_before),
                             elapsed))
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    timings = json.loads(out.strip().splitlines()[-1])["timings"] if out.strip() else []
    results = []
    for phase, samples, server_cpu, client_cpu, database_cpu, busy, _ in measured:
        first_due = samples[0].due + args.warmup
        counted = [s for s in samples if s.due >= first_due]
        window = (first_due, max(s.done for s in counted))
        server_ms = np.array([d for at, d, method in timings
                              if method == phase and first_due <= at <= window[1]]) * 1000
        # CPU over the whole offer of the phase, warm-up included
        results.append(Result(name, phase, counted, window, server_ms, server_cpu, client_cpu,
                              database_cpu, busy, 201 if phase == "POST" else 200))
    return results


def percentiles(values_ms: np.ndarray) -> dict[str, float]:
    if not len(values_ms):
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    p50, p90, p99 = np.percentile(values_ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values_ms.max())}


def report(result: Result) -> dict[str, Any]:
    ok = [s for s in result.samples if s.status == result.expected]
    errors: dict[int, int] = {}
    for s in result.samples:
        if s.status != result.expected:
            errors[s.status] = errors.get(s.status, 0) + 1
    latency = np.array([s.done - s.due for s in ok]) * 1000
    lag = np.array([s.sent - s.due for s in result.samples]) * 1000
    span = result.window[1] - result.window[0]
    row: dict[str, Any] = {
        "server": result.server, "phase": result.phase, "count": len(result.samples),
        "errors": sum(errors.values()), "error_statuses": errors,
        "rate": len(ok) / span if span > 0 else 0.0, **percentiles(latency),
        "handler": percentiles(result.server_ms),
        "client_lag_p99": float(np.percentile(lag, 99)) if len(lag) else 0.0,
        "server_cpu": result.server_cpu, "client_cpu": result.client_cpu,
        "database_cpu": result.database_cpu, "machine_busy": result.machine_busy,
        "body_bytes": int(np.median([len(s.body) for s in ok])) if ok else 0}
    row["p50_ok"] = row["p50"] <= TARGET_P50_MS
    row["p99_ok"] = row["p99"] <= TARGET_P99_MS
    return row


def print_rows(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    mark = {True: "✓", False: "✗"}
    print(f"{'server':<14} {'phase':<5} {'count':>6} {'errors':>6} {'req/s':>7} {'p50':>7} "
          f"{'p90':>7} {'p99':>7} {'max':>7} {'bytes':>6}   target p50≤{TARGET_P50_MS:g} "
          f"p99≤{TARGET_P99_MS:g} ms")
    for r in rows:
        print(f"{r['server']:<14} {r['phase']:<5} {r['count']:>6} {r['errors']:>6} "
              f"{r['rate']:>7.1f} {r['p50']:>7.2f} {r['p90']:>7.2f} {r['p99']:>7.2f} "
              f"{r['max']:>7.1f} {r['body_bytes']:>6}   p50 {mark[r['p50_ok']]}  "
              f"p99 {mark[r['p99_ok']]}")
    cores = os.cpu_count() or 1
    for r in rows:
        s = r["handler"]
        extra = f"; errors by status {r['error_statuses']}" if r["errors"] else ""
        others = (r["machine_busy"] * cores - r["server_cpu"] - r["client_cpu"]
                  - r["database_cpu"])
        database = f", PostgreSQL {r['database_cpu'] * 100:.0f}%" if r["database_cpu"] else ""
        print(f"  {r['server']} {r['phase']}: handler p50 {s['p50']:.2f} p99 {s['p99']:.2f} ms; "
              f"client send lag p99 {r['client_lag_p99']:.2f} ms; CPU (% of one core): server "
              f"{r['server_cpu'] * 100:.0f}%{database}, load generator "
              f"{r['client_cpu'] * 100:.0f}%, others {max(0.0, others) * 100:.0f}%{extra}")


def run_postgresql(args: argparse.Namespace, data_dir: Path) -> list[Result]:
    from tests.pg_peer import postgres_skip_reason, start_postgres

    reason = postgres_skip_reason()
    if reason is not None:
        print(f"postgresql: skipped: {reason}")
        return []
    pg_base = Path(tempfile.mkdtemp(prefix="ars-bench-pg-"))  # reachable by postgres
    try:
        pg = start_postgres(pg_base)
        try:
            url = pg.url(pg.create_database())
            postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
            return run_server("postgresql", [sys.executable, __file__, "--serve", "--db", url,
                                             "--data-dir", str(data_dir)], args, postmaster)
        finally:
            pg.stop()
    finally:
        shutil.rmtree(pg_base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds offered, not counted")
    parser.add_argument("--db", default="both",
                        help="sqlite | postgresql | both; with --serve: the database URL")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", nargs=2, type=int, metavar=("POST_SIZE", "GET_SIZE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.serve_floor:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        asyncio.run(serve_floor(args.port, *args.serve_floor) if args.serve_floor
                    else serve(args.db, args.port, args.data_dir))
        return
    if args.db not in ("sqlite", "postgresql", "both"):
        parser.error("--db: expected sqlite, postgresql or both")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(f"# HTTP API  {time.strftime('%Y-%m-%d')}  {machine()}; offered {args.rate:g} req/s "
          f"for {args.seconds:g} s per phase after {args.warmup:g} s warm-up")
    rows: list[dict[str, Any]] = []
    base = Path(tempfile.mkdtemp(prefix="ars-bench-api-"))
    try:
        for kind in kinds:
            if kind == "sqlite":
                url = f"sqlite+aiosqlite:///{base / 'ars.db'}"
                found = run_server(kind, [sys.executable, __file__, "--serve", "--db", url,
                                          "--data-dir", str(base / "data")], args)
            else:
                found = run_postgresql(args, base / "data-pg")
            rows += [report(r) for r in found]
            if kind == kinds[0]:  # the floor answers with the sizes our first server gave
                sizes = {r["phase"]: r["body_bytes"] for r in rows}
                floor = run_server(FLOOR, [sys.executable, __file__, "--serve-floor",
                                           str(sizes["POST"]), str(sizes["GET"])], args)
                rows += [report(r) for r in floor]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print_rows(rows, args)
    floor_rows = {r["phase"]: r for r in rows if r["server"] == FLOOR}
    for r in rows:
        if r["server"] == FLOOR:
            continue
        peer = floor_rows[r["phase"]]
        result(f"api_{r['phase'].lower()}_{r['server']}", r["p50"], "ms p50", FLOOR,
               peer["p50"], better="lower", ours_note=f"p99 {r['p99']:.2f}",
               peer_note=f"p99 {peer['p99']:.2f}")


if __name__ == "__main__":
    main()
