"""The faults: each builds its own cluster, runs a load of calls while the fault happens, waits
until every call is settled (terminal, terminal webhook received) or a deadline passes, and
tallies what the peers saw (reliability/report.py).

Sizes: :data:`FULL` (``make reliability``) and :data:`CI` (the test suite). Every wait on the
system is on an event (the receiver's) or a bounded poll of the database where the engine has no
push for another process's writes; the random delays are the fault schedule (seeded), not
synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cluster import Cluster, ClusterOptions, Load
from .relay import Impairment
from .report import Tally
from .tcpcut import TcpCutter

Say = Callable[[str], None]


@dataclass(frozen=True)
class Size:
    kills: int  # kill -9 of a node during load
    pg_restarts: int
    webhook_down_seconds: float
    lossy_calls: int
    disk_full_calls: int
    ami_drops: int


FULL = Size(kills=100, pg_restarts=5, webhook_down_seconds=180.0, lossy_calls=60,
            disk_full_calls=12, ami_drops=10)
CI = Size(kills=3, pg_restarts=1, webhook_down_seconds=8.0, lossy_calls=6, disk_full_calls=3,
          ami_drops=2)

KILL9_CALLS_PER_SECOND = 0.6  # the load during the kills (two nodes, 16 phones)
# After the load: a call is taken for stuck when no call has ended for SETTLE_SECONDS (longer
# than a call plus a lease and the first webhook retries); the whole wait is capped.
SETTLE_SECONDS = 150.0
SETTLE_CAP = 3600.0
CONSENT = {"merchant": "에이알에스 통신", "bank": "국민은행", "holder": "홍길동",
           "account_tail": "7890", "debit_day": "25", "amount": "50000"}


async def settle(cluster: Cluster, load: Load, idle: float, fault: str,
                 started: float) -> Tally:
    """Wait until every accepted call has a terminal webhook, or until ``idle`` seconds pass
    without a new one (calls to one number run one after the other, so a backlog can take
    minutes to drain: only a wait without progress means stuck), then tally."""
    receiver = cluster.receiver
    assert receiver is not None
    wanted = set(load.requested.values())
    loop = asyncio.get_running_loop()
    give_up = loop.time() + SETTLE_CAP
    settled, progress_at = -1, loop.time()
    while loop.time() < give_up:
        receiver.changed.clear()
        done = len(wanted & set(receiver.terminal_per_call()))
        if done == len(wanted):
            break
        if done > settled:
            settled, progress_at = done, loop.time()
        quiet_left = progress_at + idle - loop.time()
        if quiet_left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(quiet_left):
                await receiver.changed.wait()
    result = await cluster.verdict(fault, load)
    result.facts["API fail-overs"] = load.failovers
    if receiver.bad_signatures:
        result.problems.append(f"{receiver.bad_signatures} webhooks with a bad signature")
    result.seconds = time.monotonic() - started
    return result


async def _active_of(cluster: Cluster, node_id: str) -> int:
    rows = await asyncio.to_thread(
        cluster.psql, "SELECT count(*) FROM calls WHERE state IN ('dialing','ringing','answered')"
                      f" AND lease_owner = '{node_id}'")
    return int(rows[0][0])


async def kill9(work: Path, size: Size, say: Say) -> Tally:
    """kill -9 a random node every 1-4 s while calls flow. After an odd kill it is restarted at
    once (it recovers its own calls at start); after an even one only once the other node took
    over (its in-flight calls failed once by the survivor: the hand-over time is measured)."""
    started = time.monotonic()
    rng = random.Random(8)
    options = ClusterOptions(nodes=2, phones=16)
    async with Cluster(work, options, say) as cluster:
        load = Load(cluster, total=100_000, rate=KILL9_CALLS_PER_SECOND)
        done = asyncio.Event()
        loader = asyncio.create_task(load.run(done))  # calls flow until the last kill
        handovers: list[float] = []
        for kill in range(1, size.kills + 1):
            await asyncio.sleep(rng.uniform(1.0, 4.0))  # the fault schedule
            victim = rng.choice(cluster.nodes)
            await victim.kill()
            killed_at = time.monotonic()
            if kill % 2:
                await victim.start()
            else:
                async with asyncio.timeout(60):
                    while await _active_of(cluster, victim.node_id):
                        await asyncio.sleep(0.2)  # another process's writes: polled
                handovers.append(time.monotonic() - killed_at)
                await victim.start()
            if kill % 10 == 0 or kill == size.kills:
                say(f"  kill9: {kill}/{size.kills} kills, {len(load.requested)} calls posted")
        done.set()
        await loader
        result = await settle(cluster, load, SETTLE_SECONDS, "kill9", started)
    result.facts["kills"] = size.kills
    if handovers:
        result.facts["hand-overs"] = len(handovers)
        result.facts["hand-over median s"] = round(statistics.median(handovers), 1)
        result.facts["hand-over max s"] = round(max(handovers), 1)
    return result


async def pg_restart(work: Path, size: Size, say: Say) -> Tally:
    """PostgreSQL stopped (fast shutdown: every connection dropped) for 1-5 s, then started
    again, during the load."""
    started = time.monotonic()
    rng = random.Random(9)
    async with Cluster(work, ClusterOptions(nodes=2, phones=8), say) as cluster:
        assert cluster.postgres is not None
        calls = max(8, size.pg_restarts * 8)
        load = Load(cluster, total=calls, rate=calls / (size.pg_restarts * 8.0 + 2))
        loader = asyncio.create_task(load.run())
        outages = []
        for restart in range(1, size.pg_restarts + 1):
            await asyncio.sleep(rng.uniform(2.0, 6.0))  # the fault schedule
            began = time.monotonic()
            await asyncio.to_thread(cluster.postgres.stop)  # fast: every connection dropped
            await asyncio.sleep(rng.uniform(1.0, 5.0))  # down for a while, like a failover
            await asyncio.to_thread(cluster.postgres.start)
            outages.append(time.monotonic() - began)
            say(f"  pg_restart: {restart}/{size.pg_restarts} restarts")
        await loader
        result = await settle(cluster, load, SETTLE_SECONDS, "pg_restart", started)
    result.facts["restarts"] = size.pg_restarts
    result.facts["outage max s"] = round(max(outages), 1)
    return result


async def webhook_down(work: Path, size: Size, say: Say) -> Tally:
    """The verification service's webhook endpoint refuses connections while the calls run and
    for ``webhook_down_seconds``; then it comes back and every event must arrive once."""
    started = time.monotonic()
    async with Cluster(work, ClusterOptions(nodes=2, phones=8), say) as cluster:
        receiver = cluster.receiver
        assert receiver is not None
        await receiver.stop()
        calls = 12 if size.webhook_down_seconds > 60 else 4
        load = Load(cluster, total=calls, rate=2.0)
        await load.run()
        say(f"  webhook_down: receiver down for {size.webhook_down_seconds:.0f} s")
        await asyncio.sleep(size.webhook_down_seconds)  # the outage itself
        await receiver.start()
        result = await settle(cluster, load, SETTLE_SECONDS + size.webhook_down_seconds,
                              "webhook_down", started)
    result.facts["receiver down s"] = size.webhook_down_seconds
    return result


async def lossy(work: Path, size: Size, say: Say) -> Tally:
    """SIP and RTP through relays that drop 5 %, duplicate 3 % and reorder 5 % of datagrams."""
    started = time.monotonic()
    impairment = Impairment(drop=0.05, duplicate=0.03, reorder=0.05, seed=10)
    async with Cluster(work, ClusterOptions(nodes=2, phones=16, impairment=impairment),
                       say) as cluster:
        load = Load(cluster, total=size.lossy_calls, rate=1.0)
        await load.run()
        result = await settle(cluster, load, SETTLE_SECONDS, "lossy", started)
    counts = impairment.counts
    for kind in ("sip", "rtp"):
        result.facts[f"{kind} datagrams"] = counts[f"{kind}_in"]
        result.facts[f"{kind} dropped/dup/reordered"] = (
            f"{counts[f'{kind}_dropped']}/{counts[f'{kind}_duplicated']}/"
            f"{counts[f'{kind}_reordered']}")
    return result


async def disk_full(work: Path, size: Size, say: Say) -> Tally:
    """Recorded consent calls (type E) while the recordings' file system is full (a small
    tmpfs filled to the last byte)."""
    started = time.monotonic()
    mount = work / "recordings-tmpfs"
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"disk_full needs to mount a tmpfs (root): {done.stderr.strip()}")
    try:
        options = ClusterOptions(nodes=2, phones=4, keys="1", recordings_dir=mount)
        async with Cluster(work, options, say) as cluster:
            with (mount / "filler").open("wb") as filler, contextlib.suppress(OSError):
                while True:  # every byte left, taken
                    filler.write(b"\0" * 65536)
                    filler.flush()
            free = shutil.disk_usage(mount).free
            load = Load(cluster, total=size.disk_full_calls, rate=0.5, scenario="type_e",
                        params=CONSENT)
            await load.run()
            result = await settle(cluster, load, SETTLE_SECONDS, "disk_full", started)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    result.facts["bytes free"] = free
    return result


def asterisk_table(peer: Any, *, ami_port: int | None = None) -> str:
    """The ``[asterisk]`` table of a node using ``peer`` (an AsteriskPeer), its AMI reached on
    ``ami_port`` (default: Asterisk's own), calls dialled to the phones over PJSIP. The AMI
    secret comes from ``ARS_AMI_SECRET`` in the node's environment."""
    return ("[asterisk]\n"
            f'ami = "127.0.0.1:{ami_port or peer.ami_port}"\nami_username = "{peer.ami_user}"\n'
            'ami_secret_env = "ARS_AMI_SECRET"\n'
            f'agi_listen = "127.0.0.1:{peer.agi_port}"\nsounds_dir = "{peer.sounds_dir}"\n'
            'dial = "PJSIP/softphone/{target}"\nanswer_timeout = 10\n')


async def ami_drop(work: Path, size: Size, say: Say) -> Tally:
    """A node on the Asterisk backend (a real Asterisk 22, ../shared/asterisk) whose AMI
    connection is cut every 2-5 s while calls flow (through a TCP relay that resets both sides);
    the calls' scenarios run over FastAGI, which the cut does not touch."""
    from tests.integration.asterisk_peer import AsteriskPeer, asterisk_skip_reason

    if reason := asterisk_skip_reason():
        return Tally("ami_drop", skipped=reason)
    started = time.monotonic()
    rng = random.Random(11)
    socket_dir = Path(tempfile.mkdtemp(prefix="ars-ast-"))
    peer = AsteriskPeer.configure(work / "asterisk", socket_dir)
    cutter = TcpCutter((peer.ami_host, peer.ami_port))
    try:
        await peer.start()
        await cutter.start()
        options = ClusterOptions(
            nodes=1, phones=12, extra_service='backend = "asterisk"\n',
            env={"ARS_AMI_SECRET": peer.ami_secret},
            tables=asterisk_table(peer, ami_port=cutter.port))
        async with Cluster(work, options, say) as cluster:
            calls = max(6, size.ami_drops * 4)
            load = Load(cluster, total=calls, rate=calls / (size.ami_drops * 3.5 + 2))
            loader = asyncio.create_task(load.run())
            for drop in range(1, size.ami_drops + 1):
                await asyncio.sleep(rng.uniform(2.0, 5.0))  # the fault schedule
                cut = cutter.cut()
                say(f"  ami_drop: {drop}/{size.ami_drops} cuts ({cut} connection)")
            await loader
            result = await settle(cluster, load, SETTLE_SECONDS, "ami_drop", started)
    finally:
        await cutter.close()
        await peer.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
    result.facts["AMI cuts"] = cutter.cuts
    result.facts["AMI connections"] = cutter.accepted
    return result


FAULTS: dict[str, Callable[[Path, Size, Say], Awaitable[Tally]]] = {
    "kill9": kill9, "pg_restart": pg_restart, "webhook_down": webhook_down, "lossy": lossy,
    "disk_full": disk_full, "ami_drop": ami_drop,
}
