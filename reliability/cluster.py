"""A cluster of real engines on one PostgreSQL, for the fault suite and the multi-node tests.

:class:`Cluster` starts a private PostgreSQL 15 (tests/pg_peer.py), QA softphones (optionally
behind a :class:`~reliability.relay.LossyRelay` each), a webhook receiver, a tenant (by the CLI)
and ``nodes`` × ``ars-engine serve`` subprocesses sharing the database and one master key, each
with its own node id, site, API port and SIP endpoint (its own "trunk"). :class:`Load` posts calls
through the nodes' APIs as a load balancer would: round robin, and on a refused connection or a
5xx the same request (same ``Idempotency-Key``) to the next node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiohttp

from ars_engine.qa.receiver import WebhookReceiver
from ars_engine.qa.softphone import AnswerFeed, Softphone, SoftphoneBehaviour, parse_cues
from tests.pg_peer import PostgresServer, free_port, start_postgres

from .relay import Impairment, LossyRelay
from .report import Tally, tally

ROOT = Path(__file__).resolve().parents[1]
ENGINE = [sys.executable, "-m", "ars_engine.cli"]
START_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0
CODE = "123456"
TERMINAL = ("finished", "failed", "canceled")


class NodeProcess:
    """One ``ars-engine serve`` subprocess; its stderr goes to ``log``."""

    def __init__(self, index: int, config: Path, env: dict[str, str], log: Path,
                 port: int) -> None:
        self.index, self.config, self.env, self.log, self.port = index, config, env, log, port
        self.node_id = f"node-{index}"
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        out = self.log.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *ENGINE, "--log-level", "INFO", "serve", "--config", str(self.config),
            env=self.env, stdout=out, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
        stderr = self.process.stderr
        assert stderr is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    line = await stderr.readline()
                    if not line:
                        await self.process.wait()
                        out.close()
                        raise RuntimeError(f"{self.node_id} exited at start "
                                           f"({self.process.returncode}); log {self.log}:\n"
                                           f"{_tail(self.log)}")
                    out.write(line)
                    if b"serving on" in line:
                        break
        except TimeoutError:
            out.close()
            raise RuntimeError(f"{self.node_id} did not start in {START_TIMEOUT:.0f} s; "
                               f"log {self.log}:\n{_tail(self.log)}") from None
        out.flush()
        self._drain = asyncio.create_task(_copy(stderr, out))
        self.starts += 1

    async def kill(self) -> None:
        """SIGKILL: no drain, no clean stop, the row and the leases left as they were."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._drain is not None:
            await self._drain
            self._drain = None

    def pause(self) -> None:
        """SIGSTOP: the process is frozen (no heartbeat, no claim) until :meth:`resume`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            await self._drain
            self._drain = None


async def _copy(stream: asyncio.StreamReader, out: IO[bytes]) -> None:
    try:
        while line := await stream.readline():
            out.write(line)
            out.flush()
    finally:
        out.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ClusterOptions:
    nodes: int = 2
    phones: int = 8
    lease_seconds: float = 3.0
    poll_seconds: float = 0.2
    impairment: Impairment | None = None  # a lossy relay in front of every phone
    recordings_dir: Path | None = None  # default: <work>/recordings
    keys: str = CODE  # what every phone keys in after the first prompt
    extra_service: str = ""  # more [service] lines for every node
    tables: str = ""  # more TOML tables for every node (e.g. [asterisk])
    env: dict[str, str] = field(default_factory=dict)  # more environment for the nodes
    # node index → (more [service] lines, more tables) for that node only
    per_node: Callable[[int], tuple[str, str]] | None = None


@dataclass
class Cluster:
    """``async with Cluster(work, options) as cluster``: everything above, started."""

    work: Path
    options: ClusterOptions = field(default_factory=ClusterOptions)
    say: Callable[[str], None] = print
    postgres: PostgresServer | None = None
    database_url: str = ""
    phones: list[Softphone] = field(default_factory=list)
    relays: list[LossyRelay] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    nodes: list[NodeProcess] = field(default_factory=list)
    receiver: WebhookReceiver | None = None
    api_key: str = ""
    _routes: dict[str, str] = field(default_factory=dict)  # number → the phone's SIP URI
    _feeds: list[AnswerFeed] = field(default_factory=list)
    _pg_dir: Path | None = None

    async def __aenter__(self) -> Cluster:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _start(self) -> None:
        o = self.options
        self.work.mkdir(parents=True, exist_ok=True)
        self._pg_dir = Path(tempfile.mkdtemp(prefix="ars-rel-pg-"))
        self.postgres = await asyncio.to_thread(start_postgres, self._pg_dir)
        self.database_url = self.postgres.url(await asyncio.to_thread(
            self.postgres.create_database))
        key_file = self.work / "secret.key"
        key_file.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
        key_file.chmod(0o600)
        for index in range(o.phones):
            phone = Softphone(("127.0.0.1", 0),
                              SoftphoneBehaviour(keys=parse_cues([o.keys])),
                              self.work / "phones" / f"phone{index}")
            await phone.start()
            self.phones.append(phone)
            address = phone.address
            if o.impairment is not None:
                relay = LossyRelay(phone.address, o.impairment)
                await relay.start()
                self.relays.append(relay)
                address = relay.address
            number = f"+8210555{index:05d}"
            self.numbers.append(number)
            self._routes[number] = f"sip:qa@{address[0]}:{address[1]}"
        recordings = o.recordings_dir or self.work / "recordings"
        env = {**os.environ, "ARS_DATABASE_URL": self.database_url,
               "ARS_RECORDINGS_DIR": str(recordings), "PYTHONPATH": str(ROOT), **o.env}
        configs = [self._config(index, key_file) for index in range(o.nodes)]
        created = json.loads(await asyncio.to_thread(
            _cli, env, "tenants", "create", "bank", "--config", str(configs[0][0]), "--json",
            "--max-concurrent", "1000", "--per-number-limit", "1000",
            "--per-number-window", "60"))
        self.api_key = created["api_key"]
        self.receiver = WebhookReceiver(created["webhook_secret"], port=free_port(),
                                        path="/hook")
        await self.receiver.start()
        for index, (config, port) in enumerate(configs):
            node = NodeProcess(index, config, env, self.work / f"node-{index}.log", port)
            await node.start()  # one after the other: the first renders the prompt cache
            self.nodes.append(node)
        self.say(f"  cluster: PostgreSQL on {self.postgres.port}, {o.nodes} nodes "
                 f"({', '.join(n.url for n in self.nodes)}), {o.phones} phones"
                 + (" behind lossy relays" if o.impairment else ""))

    def _config(self, index: int, key_file: Path) -> tuple[Path, int]:
        o = self.options
        port = free_port()
        path = self.work / f"node-{index}.toml"
        service, tables = o.per_node(index) if o.per_node else ("", "")
        path.write_text(
            "[service]\n"
            f'listen = "127.0.0.1:{port}"\n'
            f'data_dir = "{self.work / f"node-{index}"}"\n'
            f'node_id = "node-{index}"\n'
            f'site = "{"site-a" if index % 2 == 0 else "site-b"}"\n'
            f'secret_key_file = "{key_file}"\n'
            f"lease_seconds = {o.lease_seconds}\npoll_seconds = {o.poll_seconds}\n"
            + o.extra_service + service +
            "[numbers]\n" + "".join(f'"{number}" = "{route}"\n'
                                    for number, route in self._routes.items())
            + o.tables + tables,
            encoding="utf-8")
        return path, port

    @property
    def hook_url(self) -> str:
        assert self.receiver is not None
        return self.receiver.url

    def answer_feed(self) -> AnswerFeed:
        """The calls the phones answer from now on, merged (closed with the cluster)."""
        feed = AnswerFeed(self.phones)
        self._feeds.append(feed)
        return feed

    async def verdict(self, fault: str, *loads: Load,
                      rows: dict[str, dict[str, Any]] | None = None) -> Tally:
        """The tally of ``loads``' calls from the database (``rows`` if already read), the
        receiver and the phones (reliability/report.py)."""
        receiver = self.receiver
        assert receiver is not None
        return tally(fault, requested={k: v for load in loads for k, v in load.requested.items()},
                     refused=[text for load in loads for text in load.refused],
                     rows=rows if rows is not None else await self.call_rows(),
                     terminal_events=receiver.terminal_per_call(), invites=self.invites(),
                     deliveries=receiver.deliveries - receiver.bad_signatures,
                     distinct_events=len(receiver.events))

    async def owners(self) -> dict[str, str]:
        """Call id → the node holding its lease (calls in progress only)."""
        rows = await asyncio.to_thread(
            self.psql, "SELECT id, lease_owner FROM calls WHERE state IN "
                       "('dialing','ringing','answered') AND lease_owner IS NOT NULL")
        return {r[0]: r[1] for r in rows}

    async def transitions(self) -> list[tuple[str, str, str, str]]:
        """Every state change: (call id, to state, node, reason) in order."""
        rows = await asyncio.to_thread(
            self.psql, "SELECT call_id, to_state, coalesce(node,''), coalesce(reason,'') "
                       "FROM call_transitions ORDER BY id")
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def invites(self) -> list[str]:
        """Every INVITE the phones received (SIP Call-IDs ``<call id>-<attempt>``)."""
        return [invite for phone in self.phones for invite in phone.invites]

    async def close(self) -> None:
        for feed in self._feeds:
            feed.close()
        for node in self.nodes:
            if node.alive:
                node.resume()  # a paused node must be able to take its SIGTERM
            with contextlib.suppress(Exception):
                await node.stop()
        if self.receiver is not None:
            await self.receiver.stop()
        for relay in self.relays:
            await relay.close()
        for phone in self.phones:
            await phone.close()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.postgres.stop)
        if self._pg_dir is not None:
            shutil.rmtree(self._pg_dir, ignore_errors=True)
            self._pg_dir = None

    # -- reading the truth ----------------------------------------------------------------------

    def psql(self, sql: str) -> list[list[str]]:
        assert self.postgres is not None
        dbname = self.database_url.rsplit("/", 1)[1]
        out = self.postgres.psql(sql, dbname)
        return [line.split("|") for line in out.splitlines() if line]

    async def call_rows(self) -> dict[str, dict[str, Any]]:
        """Every call in the database: id → state, outcome, reason, attempts."""
        rows = await asyncio.to_thread(
            self.psql, "SELECT id, state, coalesce(outcome,''), coalesce(reason,''), attempts "
                       "FROM calls")
        return {r[0]: {"state": r[1], "outcome": r[2], "reason": r[3], "attempts": int(r[4])}
                for r in rows}


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*ENGINE, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=180, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ars-engine {' '.join(args[:2])} failed: {done.stderr}")
    return done.stdout


@dataclass
class Load:
    """Posts ``total`` calls at ``rate`` per second through the cluster's nodes (round robin,
    failing over to the next node with the same Idempotency-Key, as a load balancer would)."""

    cluster: Cluster
    total: int
    rate: float
    scenario: str = "type_c"
    params: dict[str, Any] = field(default_factory=lambda: {"code": CODE})
    via: list[NodeProcess] | None = None  # post only to these nodes (default: all)
    schedule_in: float | None = None  # seconds: calls placed that much later (schedule_at)
    requested: dict[str, str] = field(default_factory=dict)  # idempotency key → call id
    refused: list[str] = field(default_factory=list)  # requests no node accepted (lost)
    failovers: int = 0  # requests that needed another node or another try
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Post the calls on schedule; with ``stop``, until it is set (``total`` at most)."""
        headers = {"Authorization": f"Bearer {self.cluster.api_key}"}
        async with aiohttp.ClientSession(headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=10)) as http:
            started = time.monotonic()
            for index in range(self.total):
                due = started + index / self.rate
                delay = due - time.monotonic()
                if stop is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(delay, 0)):
                            await stop.wait()
                    if stop.is_set():
                        return
                elif delay > 0:
                    await asyncio.sleep(delay)  # the load's schedule, not a synchronisation
                await self._post(http, index)

    async def _post(self, http: aiohttp.ClientSession, index: int) -> None:
        numbers = self.cluster.numbers
        nodes = self.via or self.cluster.nodes
        key = f"rel-{index}-{secrets.token_hex(4)}"
        body: dict[str, Any] = {"scenario": self.scenario, "to": numbers[index % len(numbers)],
                                "params": self.params, "callback_url": self.cluster.hook_url,
                                "reference": key}
        if self.schedule_in is not None:
            body["schedule_at"] = (datetime.now(UTC)
                                   + timedelta(seconds=self.schedule_in)).isoformat()
        deadline = time.monotonic() + 60.0
        tries = 0
        while time.monotonic() < deadline:
            node = nodes[next(self._turn) % len(nodes)]
            tries += 1
            try:
                async with http.post(f"{node.url}/v1/calls", json=body,
                                     headers={"Idempotency-Key": key}) as resp:
                    if resp.status in (200, 201):
                        self.requested[key] = (await resp.json())["id"]
                        self.failovers += tries > 1
                        return
                    if resp.status < 500 and resp.status != 429:
                        self.refused.append(f"{key}: HTTP {resp.status} {await resp.text()}")
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if tries % len(nodes) == 0:
                await asyncio.sleep(0.2)  # every node refused: back off before the next round
        self.refused.append(f"{key}: no node accepted it within 60 s")
