"""POST /v1/calls latency at a fixed offered rate, on SQLite and on PostgreSQL.

The API runs in a server subprocess (this file with ``--serve``): the store at the given URL,
migrated, the shipped scenarios (no media: nothing is dialed), no dispatcher and no webhook
sender, so what is measured is the HTTP API and the store. It creates one tenant with limits
that never bite and prints its API key. The load generator (this process, its own event loop)
offers ``type_c`` calls open-loop: request ``i`` is due at ``start + i / rate`` whatever the
earlier ones are doing, and its latency runs from that due time to the end of the response body,
so a stalled server is charged for every request it delays (no coordinated omission). Each
request calls a new number; every other one carries a unique Idempotency-Key (its record is
written too). The first ``--warmup`` seconds are offered but not counted.

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

TARGET_P50_MS = 10.0  # issue acceptance: POST /v1/calls at 200 req/s
TARGET_P99_MS = 20.0
TENANT = "bench"
CODE = "123456"
READY = "READY"


# -- the server (its own process) ------------------------------------------------------------------

async def serve(db_url: str, port: int, data_dir: Path) -> None:
    """Run the API on 127.0.0.1:``port`` until SIGTERM; print ``READY <api key>`` once it
    listens, and on exit one JSON line: each request's start (time.monotonic) and handler time."""
    from aiohttp import web

    from ars_engine.api.app import create_app
    from ars_engine.config import Settings
    from ars_engine.service.catalog import ScenarioCatalog
    from ars_engine.service.runtime import Services
    from ars_engine.service.tuning import tune_runtime
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

    timings: list[tuple[float, float]] = []

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.monotonic()
        try:
            return await handler(request)
        finally:
            timings.append((started, time.monotonic() - started))

    app = create_app(services)
    app.middlewares.insert(0, timing)
    tune_runtime()  # as `ars-engine serve` does once everything long-lived is loaded
    runner = web.AppRunner(app, access_log=None, handle_signals=False)  # as `ars-engine serve`
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
        await store.close()
    print(json.dumps({"timings": timings}), flush=True)


# -- the load generator ----------------------------------------------------------------------------

@dataclass
class Sample:
    due: float  # time.monotonic() the request was scheduled for
    sent: float  # when the client actually started it
    done: float
    status: int  # 0: the request failed without a response


@dataclass
class Result:
    db: str
    samples: list[Sample]
    window: tuple[float, float]  # (first counted due time, last counted response)
    server_ms: np.ndarray
    server_cpu: float  # share of one core used by the server process while offering
    client_cpu: float  # the same for this process (the load generator)
    database_cpu: float  # the same for the PostgreSQL server processes (0 for SQLite)
    machine_busy: float  # share of all CPUs busy, anyone's


def request_body(i: int) -> bytes:
    # 010-2xxx-xxxx: a new mobile number for every request (the per-number limit never bites)
    body = {"scenario": "type_c", "to": f"010-{2000 + i // 10000:04d}-{i % 10000:04d}",
            "params": {"code": CODE}}
    return json.dumps(body).encode()


async def offer(url: str, key: str, rate: float, warmup: float, seconds: float,
                run_id: str) -> list[Sample]:
    """Offer ``rate`` × (``warmup`` + ``seconds``) requests open-loop; every sample."""
    import aiohttp

    total = round(rate * (warmup + seconds))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [request_body(i) for i in range(total)]
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=2000, limit_per_host=2000)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            sent = time.monotonic()
            extra = {"Idempotency-Key": f"bench-{run_id}-{i}"} if i % 2 == 0 else {}
            try:
                async with session.post(url, data=bodies[i],
                                        headers={**headers, **extra}) as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            samples.append(Sample(due, sent, time.monotonic(), status))

        # Open the connections before the clock starts (a real client keeps them alive).
        async with session.get(url.replace("/v1/calls", "/v1/openapi.json")) as response:
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


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu_seconds(postmaster: int | None) -> dict[int, float]:
    """CPU so far of a PostgreSQL server: its postmaster and every process it forked."""
    if postmaster is None:
        return {}
    found = {postmaster: proc_cpu_seconds(postmaster)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                found[int(stat.parent.name)] = proc_cpu_seconds(int(stat.parent.name))
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far (Linux /proc/stat): the machine is shared, so
    a run says how busy it was."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def run_database(db: str, url: str, data_dir: Path, args: argparse.Namespace,
                 postmaster: int | None = None) -> Result:
    """Start a server on ``url``, offer the load, stop the server; the measurements.
    ``postmaster``: the PostgreSQL server's pid, to count its CPU."""
    from tests.pg_peer import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--db", url, "--port", str(port),
         "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        if len(line) != 2 or line[0] != READY:
            raise SystemExit(f"{db}: the API server did not start (exit {server.poll()})")
        key = line[1]
        run_id = os.urandom(4).hex()
        cpu_before, own_before = proc_cpu_seconds(server.pid), proc_cpu_seconds(os.getpid())
        busy_before, total_before = machine_ticks()
        database_before = cluster_cpu_seconds(postmaster)
        started = time.monotonic()
        samples = asyncio.run(offer(f"http://127.0.0.1:{port}/v1/calls", key,
                                             args.rate, args.warmup, args.seconds, run_id))
        elapsed = time.monotonic() - started
        busy_after, total_after = machine_ticks()
        database_after = cluster_cpu_seconds(postmaster)
        cpu_after, own_after = proc_cpu_seconds(server.pid), proc_cpu_seconds(os.getpid())
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    timings = json.loads(out.strip().splitlines()[-1])["timings"] if out.strip() else []
    first_due = samples[0].due + args.warmup
    counted = [s for s in samples if s.due >= first_due]
    window = (first_due, max(s.done for s in counted))
    server_ms = np.array([d for at, d in timings if at >= first_due]) * 1000
    # CPU over the whole offer, warm-up included
    return Result(db, counted, window, server_ms,
                  server_cpu=(cpu_after - cpu_before) / elapsed,
                  client_cpu=(own_after - own_before) / elapsed,
                  database_cpu=sum(cpu - database_before.get(pid, 0.0)
                                   for pid, cpu in database_after.items()) / elapsed,
                  machine_busy=(busy_after - busy_before) / max(1, total_after - total_before))


def percentiles(values_ms: np.ndarray) -> dict[str, float]:
    if not len(values_ms):
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    p50, p90, p99 = np.percentile(values_ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values_ms.max())}


def report(result: Result) -> dict[str, Any]:
    ok = [s for s in result.samples if s.status == 201]
    errors: dict[int, int] = {}
    for s in result.samples:
        if s.status != 201:
            errors[s.status] = errors.get(s.status, 0) + 1
    latency = np.array([s.done - s.due for s in ok]) * 1000
    lag = np.array([s.sent - s.due for s in result.samples]) * 1000
    span = result.window[1] - result.window[0]
    row: dict[str, Any] = {
        "db": result.db, "count": len(result.samples), "errors": sum(errors.values()),
        "error_statuses": errors, "rate": len(ok) / span if span > 0 else 0.0,
        **percentiles(latency), "server": percentiles(result.server_ms),
        "client_lag_p99": float(np.percentile(lag, 99)) if len(lag) else 0.0,
        "server_cpu": result.server_cpu, "client_cpu": result.client_cpu,
        "database_cpu": result.database_cpu, "machine_busy": result.machine_busy}
    row["p50_ok"] = row["p50"] <= TARGET_P50_MS
    row["p99_ok"] = row["p99"] <= TARGET_P99_MS
    return row


def print_rows(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    mark = {True: "✓", False: "✗"}
    print(f"# POST /v1/calls  {time.strftime('%Y-%m-%d')}  offered {args.rate:g} req/s for "
          f"{args.seconds:g} s after {args.warmup:g} s warm-up, {os.cpu_count()} CPU, "
          f"Python {sys.version.split()[0]}")
    print(f"{'db':<11} {'count':>6} {'errors':>6} {'req/s':>7} {'p50':>7} {'p90':>7} "
          f"{'p99':>7} {'max':>7}   target p50≤{TARGET_P50_MS:g} p99≤{TARGET_P99_MS:g} ms")
    for r in rows:
        print(f"{r['db']:<11} {r['count']:>6} {r['errors']:>6} {r['rate']:>7.1f} "
              f"{r['p50']:>7.2f} {r['p90']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.1f}   "
              f"p50 {mark[r['p50_ok']]}  p99 {mark[r['p99_ok']]}")
    for r in rows:
        s = r["server"]
        extra = f"; errors by status {r['error_statuses']}" if r["errors"] else ""
        print(f"  {r['db']}: in the server's handler p50 {s['p50']:.2f} p90 {s['p90']:.2f} "
              f"p99 {s['p99']:.2f} max {s['max']:.1f} ms; client send lag p99 "
              f"{r['client_lag_p99']:.2f} ms{extra}")
        cores = os.cpu_count() or 1
        others = (r["machine_busy"] * cores - r["server_cpu"] - r["client_cpu"]
                  - r["database_cpu"])
        database = f", PostgreSQL {r['database_cpu'] * 100:.0f}%" if r["database_cpu"] else ""
        print(f"  {r['db']}: CPU in % of one core: API server {r['server_cpu'] * 100:.0f}%"
              f"{database}, load generator {r['client_cpu'] * 100:.0f}%, other processes "
              f"{max(0.0, others) * 100:.0f}% (of {cores * 100}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds offered, not counted")
    parser.add_argument("--db", default="both",
                        help="sqlite | postgresql | both; with --serve: the database URL")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        asyncio.run(serve(args.db, args.port, args.data_dir))
        return
    if args.db not in ("sqlite", "postgresql", "both"):
        parser.error("--db: expected sqlite, postgresql or both")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    rows = []
    for kind in kinds:
        base = Path(tempfile.mkdtemp(prefix=f"ars-bench-{kind}-"))
        try:
            if kind == "sqlite":
                rows.append(report(run_database(kind, f"sqlite+aiosqlite:///{base / 'ars.db'}",
                                                base / "data", args)))
                continue
            from tests.pg_peer import postgres_skip_reason, start_postgres

            reason = postgres_skip_reason()
            if reason is not None:
                print(f"postgresql: skipped: {reason}")
                continue
            pg_base = Path(tempfile.mkdtemp(prefix="ars-bench-pg-"))  # reachable by postgres
            try:
                pg = start_postgres(pg_base)
                try:
                    url = pg.url(pg.create_database())
                    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
                    rows.append(report(run_database(kind, url, base / "data", args,
                                                    postmaster)))
                finally:
                    pg.stop()
            finally:
                shutil.rmtree(pg_base, ignore_errors=True)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(base)
    print_rows(rows, args)


if __name__ == "__main__":
    main()
