"""The store's hot paths on PostgreSQL with asyncpg and with psycopg 3, and on SQLite.

Each backend gets a fresh database, a :class:`~ars_engine.store.db.Store` as the engine builds it
(pool of 10 + 10 overflow with pre-ping on PostgreSQL; WAL and BEGIN IMMEDIATE on SQLite) and
``await store.upgrade()`` (the Alembic migrations). PostgreSQL 15 is a private throw-away
cluster on loopback started with ``tests/pg_peer.start_postgres`` (fsync off, as in the tests),
on the same two cores as this process; SQLite is a file in a temporary directory. Three
operations, the engine's own code each time:

* ``create``: ``POST /v1/calls`` below HTTP, :meth:`CallService.create` with the shipped
  ``type_c`` scenario (its code parameter sealed with AES-GCM), a callback URL, a new number and
  a new Idempotency-Key: the replay look-up, the request checks, the per-number count,
  ``repo.add_call`` (call row + first transition), flush, the rendered response stored as an
  ``IdempotencyRecord``, one unit of work (``Store.run``: on PostgreSQL ``run_sync`` on the
  async driver; on SQLite the plain sqlite3 driver on the store's own thread, not aiosqlite).
* ``claim``: the dispatcher's :meth:`Dispatcher._claim` with ``--slots`` free slots (it reads
  4× as many due rows): ``repo.due_calls`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
  ``lock_tenants``, ``active_counts``, ``active_destinations`` and the transition of each taken
  call to ``dialing`` with its lease, one transaction. Every claim must take ``--slots`` calls.
  Calls in progress are bounded as on real nodes (``max_calls`` = 100 per node): claims run in
  rounds of 100 / slots claims per claimer, and between rounds (outside the timing) one UPDATE
  ends the calls taken and the queue is set back to ``--queue`` due calls (bulk insert, or the
  newest canceled). ``due_calls`` sorts every due call (the index ``(state, not_before)`` does
  not give its order ``not_before, created_at``), so the claim's cost grows with the queue.
* ``get``: ``GET /v1/calls/{id}``'s read, :meth:`CallService.get`: ``repo.get_call`` with its
  transitions (selectinload) and the call's webhook events, one transaction, on a random call
  created above (most of them claimed since, so two transitions).

Every operation runs sequentially (one task) and with ``--concurrency`` tasks (16: sixteen API
workers, or sixteen dispatcher nodes on one database), after untimed warm-up; the backends take
turns operation by operation in the same run. Reported: operations per second of wall time,
p50 and p99 latency of one operation, and this process's CPU time per operation (all its
threads: for SQLite that includes the database engine itself). Also ``seal`` / ``unseal`` of
a code (µs per call, best of 5).

The SQLAlchemy URL scheme ``postgresql+psycopg://`` needs psycopg 3, which is not a dependency
of the engine: install it for the run (``pip install "psycopg[binary]"``), or the psycopg rows
are skipped. ``Store`` maps every PostgreSQL URL to asyncpg (``db.SUPPORTED``), so the psycopg
store is built with that mapping pointed at psycopg for the duration of its constructor, and
the driver in use is checked.

    .venv/bin/python bench/bench_db_drivers.py [--ops 1000] [--concurrency 16] [--slots 4]
                                               [--queue 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import math
import os
import platform
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select, text, update  # noqa: E402

from ars_engine.config import Settings  # noqa: E402
from ars_engine.service.backoff import RetryPolicy  # noqa: E402
from ars_engine.service.catalog import ScenarioCatalog  # noqa: E402
from ars_engine.service.dispatcher import CLAIM_FACTOR, Dispatcher  # noqa: E402
from ars_engine.service.keys import MasterKey  # noqa: E402
from ars_engine.service.payloads import call_summary  # noqa: E402
from ars_engine.service.runtime import Services  # noqa: E402
from ars_engine.service.seal import seal, unseal  # noqa: E402
from ars_engine.store import db, repo  # noqa: E402
from ars_engine.store.db import Store  # noqa: E402
from ars_engine.store.models import (  # noqa: E402
    CANCELED,
    DIALING,
    FINISHED,
    QUEUED,
    Call,
    Tenant,
)
from tests.pg_peer import postgres_skip_reason, start_postgres  # noqa: E402

TENANTS = ("bank", "card", "insure", "telco")
FIRST_NUMBER = 20_000_000  # 010-2000-0001 onwards
MAX_CALLS_PER_NODE = 100  # ServiceConfig.max_calls's default
CODE = "731946"
OPERATIONS = ("create", "claim", "get")


@dataclass
class Backend:
    name: str  # as printed
    store: Store
    services: Services
    tenants: list[Tenant] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # call ids made by `create`
    numbers: int = 0  # destinations handed out (every call gets its own number)

    def destination(self) -> str:
        """A new mobile number, E.164 (as stored)."""
        self.numbers += 1
        return f"+8210{FIRST_NUMBER + self.numbers:08d}"

    def national(self) -> str:
        """A new mobile number as a client writes it (010-2xxx-xxxx)."""
        self.numbers += 1
        n = FIRST_NUMBER + self.numbers
        return f"010-{n // 10000:04d}-{n % 10000:04d}"


@dataclass
class Result:
    backend: str
    operation: str
    concurrency: int
    ops: int
    wall: float  # seconds
    latencies: list[float]  # seconds, one per operation
    cpu: float  # CPU seconds of this process (all its threads) over the timed operations

    @property
    def rate(self) -> float:
        return self.ops / self.wall

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- set-up ----------------------------------------------------------------------------------------

def open_store(url: str) -> Store:
    """``Store(url)``; for ``postgresql+psycopg`` with the driver mapping pointed at psycopg (the
    engine itself always maps PostgreSQL to asyncpg)."""
    driver = url.split("://", 1)[0].partition("+")[2]
    if url.startswith("postgresql+psycopg"):
        with mock.patch.dict(db.SUPPORTED, {"postgresql": "postgresql+psycopg"}):
            store = Store(url)
    else:
        store = Store(url)
    used = store.engine.dialect.driver
    assert used == driver, f"{url}: the store uses {used}, not {driver}"
    return store


async def prepare(name: str, url: str, base: Path) -> Backend:
    store = open_store(url)
    await store.upgrade()
    folder = base / name.replace(" ", "_").replace("/", "_")
    settings = Settings.from_env({"ARS_DATA_DIR": str(folder / "var"),
                                  "ARS_RECORDINGS_DIR": str(folder / "rec")})
    services = Services.build(settings, store, ScenarioCatalog.load(ROOT / "scenarios", None))
    assert "type_c" in services.catalog.scenarios, services.catalog.problems
    now = datetime.now(UTC)
    async with store.session() as s, s.begin():
        for tenant_id in TENANTS:
            s.add(Tenant(id=tenant_id, name=tenant_id.title(), created_at=now, disabled=False,
                         allowed_scenarios=None, max_concurrent=1_000_000,
                         per_number_limit=5, per_number_window_s=3600, destination_rules={}))
    async with store.session() as s:
        tenants = [t for t in [await s.get(Tenant, t) for t in TENANTS] if t is not None]
    return Backend(name, store, services, tenants)


async def fill_queue(backend: Backend, count: int) -> None:
    """``count`` more due calls, inserted in bulk (untimed): what `claim` takes."""
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        call_id = repo.new_id("call")
        rows.append(dict(
            id=call_id, tenant_id=TENANTS[i % len(TENANTS)], scenario="type_c",
            scenario_sha256="0" * 64, destination=backend.destination(),
            params={"code": "******"},
            sealed_params=seal(backend.services.keys.seal_key, call_id, {"code": CODE}),
            callback_url="https://verify.example.com/hook", reference=None,
            retry_policy=RetryPolicy().as_json(), state=QUEUED, attempts=0,
            not_before=now - timedelta(seconds=1), cancel_requested=False,
            created_at=now, updated_at=now, next_event_seq=1))
    async with backend.store.session() as s, s.begin():
        for start in range(0, len(rows), 500):
            await s.execute(insert(Call), rows[start:start + 500])


async def set_queue(backend: Backend, depth: int) -> None:
    """Exactly ``depth`` due calls waiting (untimed): top up, or cancel the newest."""
    async with backend.store.session() as s:
        queued = int(await s.scalar(text("SELECT count(*) FROM calls WHERE state = 'queued'"))
                     or 0)
    if queued < depth:
        await fill_queue(backend, depth - queued)
    elif queued > depth:
        async with backend.store.session() as s, s.begin():
            newest = (select(Call.id).where(Call.state == QUEUED)
                      .order_by(Call.not_before.desc(), Call.created_at.desc())
                      .limit(queued - depth).scalar_subquery())
            await s.execute(update(Call).where(Call.id.in_(newest)).values(state=CANCELED))


async def end_claimed(backend: Backend) -> None:
    """End the calls in progress (untimed, between claim rounds), as their nodes would."""
    now = datetime.now(UTC)
    async with backend.store.session() as s, s.begin():
        await s.execute(update(Call).where(Call.state == DIALING).values(
            state=FINISHED, outcome="success", lease_owner=None, lease_expires_at=None,
            ended_at=now, updated_at=now))


# -- operations ------------------------------------------------------------------------------------

def create_op(backend: Backend) -> Callable[[int], Awaitable[None]]:
    calls = backend.services.calls

    async def create(i: int) -> None:
        tenant = backend.tenants[i % len(backend.tenants)]
        body = {"scenario": "type_c", "to": backend.national(), "params": {"code": CODE},
                "callback_url": "https://verify.example.com/hook"}
        created = await calls.create(tenant, body, idempotency_key=repo.new_id("bench"),
                                     render=call_summary)
        assert created.status == 201 and not created.replayed
        backend.created.append(created.body["id"])

    return create


def claim_op(backend: Backend, slots: int) -> Callable[[int], Awaitable[None]]:
    nodes: dict[int, Dispatcher] = {}

    async def claim(i: int) -> None:
        worker = i % 64
        if worker not in nodes:
            nodes[worker] = Dispatcher(backend.services, backend=None,  # type: ignore[arg-type]
                                       node_id=f"bench-node-{worker}")
        taken = await nodes[worker]._claim(slots)
        assert len(taken) == slots, f"{backend.name}: claimed {len(taken)} of {slots}"

    return claim


def get_op(backend: Backend, owners: dict[str, str],
           seed: int) -> Callable[[int], Awaitable[None]]:
    """``owners``: call id → tenant id of every call in the database (read once, untimed)."""
    calls = backend.services.calls
    pick = random.Random(seed)

    async def get(_i: int) -> None:
        call_id = pick.choice(backend.created)
        call, _events = await calls.get(owners[call_id], call_id)
        assert call.transitions

    return get


# -- running ---------------------------------------------------------------------------------------

async def run(op: Callable[[int], Awaitable[None]], ops: int, concurrency: int,
              first: int = 0) -> tuple[float, list[float], float]:
    """``ops`` operations by ``concurrency`` tasks; (wall seconds, latency of each, CPU
    seconds of this process)."""
    latencies: list[float] = []
    counter = iter(range(first, first + ops))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, time.process_time() - cpu


async def measure(backend: Backend, operation: str, concurrency: int, ops: int, slots: int,
                  queue: int, seed: int) -> Result:
    if operation == "create":
        op = create_op(backend)
        await run(op, max(20, concurrency * 2), concurrency)  # warm-up
        wall, latencies, cpu = await run(op, ops, concurrency)
    elif operation == "claim":
        op = claim_op(backend, slots)
        per_round = concurrency * (MAX_CALLS_PER_NODE // slots)  # ≤ 100 in progress per claimer
        if queue < per_round * slots + slots * CLAIM_FACTOR * concurrency:
            raise SystemExit(f"--queue {queue} is too short for rounds of {per_round} claims")
        rounds = max(1, math.ceil(ops / per_round))
        await set_queue(backend, queue)
        await run(op, min(per_round, max(20, concurrency * 2)), concurrency)  # warm-up
        await end_claimed(backend)
        wall, latencies, cpu = 0.0, [], 0.0
        for r in range(rounds):
            await set_queue(backend, queue)
            took, lat, used = await run(op, per_round, concurrency, first=r * per_round)
            wall += took
            latencies += lat
            cpu += used
            await end_claimed(backend)
    else:
        async with backend.store.session() as s:
            rows = (await s.execute(text("SELECT id, tenant_id FROM calls"))).all()
        op = get_op(backend, {row[0]: row[1] for row in rows}, seed)
        await run(op, max(20, concurrency * 2), concurrency)  # warm-up
        wall, latencies, cpu = await run(op, ops, concurrency)
    return Result(backend.name, operation, concurrency, len(latencies), wall, latencies, cpu)


def seal_timings(repeat: int = 5, number: int = 20_000) -> tuple[float, float]:
    """µs per seal and per unseal of a six-digit code (best of ``repeat``)."""
    key = MasterKey(bytes(range(32)), "bench").seal_key
    call_id = repo.new_id("call")
    token = seal(key, call_id, {"code": CODE})
    assert unseal(key, call_id, token) == {"code": CODE}
    sealing = min(timeit.repeat(lambda: seal(key, call_id, {"code": CODE}),
                                repeat=repeat, number=number)) / number
    opening = min(timeit.repeat(lambda: unseal(key, call_id, token),
                                repeat=repeat, number=number)) / number
    return sealing * 1e6, opening * 1e6


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


async def main_async(args: argparse.Namespace) -> int:
    reason = postgres_skip_reason()
    if reason is not None:
        print(f"bench_db_drivers: {reason}", file=sys.stderr)
        return 2
    psycopg = version("psycopg") != "not installed"
    base = Path(tempfile.mkdtemp(prefix="ars-bench-db-"))
    backends: list[Backend] = []
    try:
        # its own directory: as root the server runs as postgres, who must reach it
        pg_dir = Path(tempfile.mkdtemp(prefix="ars-pg-"))
        server = start_postgres(pg_dir)
        try:
            urls = [("PostgreSQL asyncpg",
                     server.url(server.create_database()))]
            if psycopg:
                urls.append(("PostgreSQL psycopg",
                             server.url(server.create_database()).replace(
                                 "postgresql+asyncpg://", "postgresql+psycopg://")))
            urls.append(("SQLite", f"sqlite+aiosqlite:///{base / 'ars.db'}"))
            for name, url in urls:
                backends.append(await prepare(name, url, base))
            pg_version = server.psql("SHOW server_version").strip()
            print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
                  f"Python {platform.python_version()}; PostgreSQL {pg_version} on loopback "
                  f"(fsync off), SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)")
            print(f"SQLAlchemy {version('SQLAlchemy')}, asyncpg {version('asyncpg')}, "
                  f"psycopg {version('psycopg')} (psycopg-binary {version('psycopg-binary')}), "
                  f"aiosqlite {version('aiosqlite')}, alembic {version('alembic')}, "
                  f"cryptography {version('cryptography')}")
            sqlite = next(b.store for b in backends if not b.store.is_postgresql)
            threaded = getattr(sqlite, "_worker", None) is not None
            print("SQLite: aiosqlite" + ("; Store.run units (create) on the plain sqlite3 driver "
                                         "in the store's thread" if threaded else ""))
            if not psycopg:
                print("psycopg is not installed: its rows are skipped "
                      "(pip install \"psycopg[binary]\")")
            print(f"{args.ops} operations per row; claim takes {args.slots} calls "
                  f"(reads {args.slots * CLAIM_FACTOR} due rows) from a queue of "
                  f"{args.queue:,} due calls (topped up between rounds)\n")
            results: list[Result] = []
            turn = 0
            for operation in OPERATIONS:
                for concurrency in (1, args.concurrency):
                    # the backends take turns, each row starting with the next one
                    turn += 1
                    order = backends[turn % len(backends):] + backends[:turn % len(backends)]
                    for backend in order:
                        result = await measure(backend, operation, concurrency, args.ops,
                                               args.slots, args.queue, seed=args.seed)
                        results.append(result)
                        print(f"  {operation:6} c={concurrency:<2} {backend.name:18} "
                              f"{result.rate:8.0f} ops/s", file=sys.stderr, flush=True)
        finally:
            for backend in backends:
                await backend.store.close()
            server.stop()
            shutil.rmtree(pg_dir, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    results.sort(key=lambda r: (OPERATIONS.index(r.operation), r.concurrency,
                                [b.name for b in backends].index(r.backend)))
    header = ("| operation | tasks | backend | ops | ops/s | p50 ms | p99 ms | client CPU ms/op |\n"
              "|---|---:|---|---:|---:|---:|---:|---:|")
    print(header)
    for r in results:
        print(f"| {r.operation} | {r.concurrency} | {r.backend} | {r.ops} | {r.rate:,.0f} | "
              f"{r.percentile(0.50) * 1e3:.2f} | {r.percentile(0.99) * 1e3:.2f} | "
              f"{r.cpu / r.ops * 1e3:.2f} |")
    by = {(r.operation, r.concurrency, r.backend): r for r in results}
    if psycopg:
        print("\npsycopg / asyncpg, ops/s:")
        for operation in OPERATIONS:
            ratios = []
            for concurrency in (1, args.concurrency):
                a = by[(operation, concurrency, "PostgreSQL asyncpg")]
                p = by[(operation, concurrency, "PostgreSQL psycopg")]
                ratios.append(f"{concurrency} task{'s' if concurrency > 1 else ''} "
                              f"{p.rate / a.rate:.2f}")
            print(f"  {operation}: " + ", ".join(ratios))
    sealing, opening = seal_timings()
    print(f"\nseal {sealing:.1f} µs, unseal {opening:.1f} µs per call "
          f"(AES-256-GCM, six-digit code, best of 5 × 20,000)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="operations per row")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slots", type=int, default=4, help="calls taken per claim")
    parser.add_argument("--queue", type=int, default=2000,
                        help="due calls waiting at the start of every claim round")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # killed (SIGTERM): unwind, so the PostgreSQL cluster is stopped and the temp files go
    signal.signal(signal.SIGTERM, lambda _signo, _frame: sys.exit(143))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
