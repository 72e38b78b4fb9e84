"""The node registry (service/nodes.py) on both databases: one live process per node id, a dead
node's row taken over, heartbeats, a replaced process stops taking calls, dead nodes' webhook
leases freed, and ``ars-engine nodes``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ars_engine.service.nodes import (
    ALIVE,
    DEAD,
    STOPPED,
    NodeConflict,
    NodeRegistry,
    list_nodes,
)
from ars_engine.store.db import Store
from ars_engine.store.models import PENDING, Call, Node, Tenant, WebhookEvent

LEASE = timedelta(seconds=30)
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped), so os.kill(pid, 0) fails."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


async def _row(store: Store, node_id: str) -> Node:
    async with store.session() as s:
        row = await s.get(Node, node_id)
    assert row is not None
    return row


async def test_a_second_live_process_under_one_node_id_is_refused_with_who_holds_it(
        store: Store) -> None:
    first = NodeRegistry(store, "seoul-1", lease=LEASE, site="seoul")
    await first.register(T0)
    second = NodeRegistry(store, "seoul-1", lease=LEASE)
    with pytest.raises(NodeConflict) as caught:
        await second.register(T0 + timedelta(seconds=5))
    message = str(caught.value)
    assert "'seoul-1'" in message and f"pid {first.pid}" in message
    assert "last heartbeat 5.0 s ago" in message and "node_id" in message
    assert (await _row(store, "seoul-1")).instance == first.instance  # untouched


async def test_a_row_whose_process_died_on_this_host_is_taken_over_at_once(
        store: Store) -> None:
    first = NodeRegistry(store, "seoul-1", lease=LEASE)
    first.pid = _dead_pid()  # as if that process was killed with -9
    await first.register(T0)
    second = NodeRegistry(store, "seoul-1", lease=LEASE, site="seoul")
    await second.register(T0 + timedelta(seconds=1))  # heartbeat still fresh
    row = await _row(store, "seoul-1")
    assert (row.instance, row.pid, row.site) == (second.instance, second.pid, "seoul")
    async with store.session() as s, s.begin():
        assert not await first.beat(s, T0 + timedelta(seconds=2))  # replaced
        assert await second.beat(s, T0 + timedelta(seconds=2))


async def test_another_hosts_row_is_taken_over_only_after_a_lease_without_heartbeat(
        store: Store) -> None:
    other = NodeRegistry(store, "busan-1", lease=LEASE)
    other.host = "busan-host"
    await other.register(T0)
    again = NodeRegistry(store, "busan-1", lease=LEASE)
    with pytest.raises(NodeConflict):
        await again.register(T0 + LEASE - timedelta(seconds=1))
    await again.register(T0 + LEASE + timedelta(seconds=1))
    assert (await _row(store, "busan-1")).instance == again.instance


async def test_statuses_alive_dead_stopped_and_the_webhook_leases_of_dead_nodes_freed(
        store: Store) -> None:
    alive, dead, stopped = (NodeRegistry(store, n, lease=LEASE)
                            for n in ("node-a", "node-b", "node-c"))
    for registry in (alive, dead, stopped):
        await registry.register(T0)
    await stopped.stopped(T0 + timedelta(seconds=1))
    now = T0 + LEASE + timedelta(seconds=5)
    async with store.session() as s, s.begin():
        assert await alive.beat(s, now)
        s.add(Tenant(id="bank", name="Bank", created_at=T0, disabled=False,
                     allowed_scenarios=None, max_concurrent=10, per_number_limit=100,
                     per_number_window_s=3600, destination_rules={}))
        await s.flush()
        s.add(Call(id="c1", tenant_id="bank", scenario="type_c", scenario_sha256="0" * 64,
                   destination="+821012345678", state="finished", params={}, created_at=T0,
                   updated_at=T0, not_before=T0, attempts=1, retry_policy={}))
        await s.flush()
        for seq, owner in enumerate(("node-b", "node-a", "node-b")):
            s.add(WebhookEvent(id=f"e{seq}", call_id="c1", tenant_id="bank", seq=seq,
                               type="call.finished", url="http://127.0.0.1:9/h", body="{}",
                               status=PENDING if seq < 2 else "delivered", created_at=T0,
                               next_attempt_at=T0, attempts=1, lease_owner=owner,
                               lease_expires_at=now + timedelta(seconds=50)))
    async with store.session() as s, s.begin():
        assert sorted(await alive.release_dead(s, now)) == ["node-b", "node-c"]
    async with store.session() as s:
        owners = {e.id: e.lease_owner for e in await s.scalars(select(WebhookEvent))}
    assert owners == {"e0": None, "e1": "node-a", "e2": "node-b"}  # only pending ones freed
    async with store.session() as s:
        views = await list_nodes(s, now, LEASE)
    assert [(v.node_id, v.status) for v in views] == [
        ("node-a", ALIVE), ("node-b", DEAD), ("node-c", STOPPED)]
    assert views[1].heartbeat_age == pytest.approx(35.0)


def test_the_nodes_command_lists_the_registry(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'ars.db'}"

    async def seed() -> None:
        store = Store(url)
        try:
            await store.upgrade()
            registry = NodeRegistry(store, "seoul-1", lease=LEASE, site="seoul")
            await registry.register(datetime.now(UTC))
        finally:
            await store.close()

    asyncio.run(seed())
    env = {"ARS_DATABASE_URL": url, "ARS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    table = subprocess.run([sys.executable, "-m", "ars_engine.cli", "nodes"], env=env,
                           cwd=ROOT, capture_output=True, text=True, check=False)
    assert table.returncode == 0, table.stderr
    assert "seoul-1" in table.stdout and "alive" in table.stdout and "seoul" in table.stdout
    listed = subprocess.run([sys.executable, "-m", "ars_engine.cli", "nodes", "--json"],
                            env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    rows = json.loads(listed.stdout)
    assert [(r["node_id"], r["site"], r["status"]) for r in rows] == [("seoul-1", "seoul",
                                                                       "alive")]


async def test_a_node_with_another_master_key_than_a_live_node_is_refused(store: Store) -> None:
    await NodeRegistry(store, "seoul-1", lease=LEASE, key_id="aaaa").register(T0)
    other = NodeRegistry(store, "busan-1", lease=LEASE, key_id="bbbb")
    with pytest.raises(NodeConflict) as caught:
        await other.register(T0 + timedelta(seconds=1))
    assert "id bbbb" in str(caught.value) and "'seoul-1'" in str(caught.value)
    assert "id aaaa" in str(caught.value) and "secret_key_file" in str(caught.value)
    await NodeRegistry(store, "busan-1", lease=LEASE, key_id="aaaa").register(T0)
    # once the other key's node is gone (no heartbeat for a lease), the start is allowed
    await other.register(T0 + LEASE + timedelta(seconds=1))
